"""Rules on signed meter data (mod_cdrs §10.4.7, §10.4.8; clearing notes §1.6 EICH).

The hub keeps ``signed_data`` byte for byte (the raw CDR is stored unchanged) but does not verify signatures:
that needs the transparency software of each encoding (OCMF, Alfen, EDL40…). These rules say what a verifier would
lack, and that nobody verified.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from clearing.facts import Facts
from clearing.rules.base import Issue, Severity, pointer, rule


def _signed(facts: Facts) -> Mapping[str, object] | None:
    value = facts.doc.get("signed_data")
    return value if isinstance(value, dict) else None


@rule("CDR100", Severity.WARNING, "signed data present but not verifiable", catalogue="EICH")
def verifiable(facts: Facts) -> Iterator[Issue]:
    signed = _signed(facts)
    if signed is not None and not signed.get("public_key"):
        yield Issue(
            f"signed_data ({signed.get('encoding_method')}) carries no public_key, so nobody can verify the "
            "signatures from the CDR alone",
            "/signed_data/public_key",
        )


@rule("CDR101", Severity.INFO, "signed data not verified by the hub", catalogue="EICH")
def not_verified(facts: Facts) -> Iterator[Issue]:
    signed = _signed(facts)
    if signed is not None:
        yield Issue(
            f"signed_data ({signed.get('encoding_method')}) is kept byte for byte; the hub does not verify "
            "signatures, so a transparency tool must",
            "/signed_data",
        )


@rule("CDR102", Severity.WARNING, "signed values lack a Start or End value", catalogue="EICH")
def start_and_end(facts: Facts) -> Iterator[Issue]:
    signed = _signed(facts)
    values = signed.get("signed_values") if signed is not None else None
    if not isinstance(values, list):
        return
    natures = {str(value.get("nature", "")).upper() for value in values if isinstance(value, dict)}
    missing = [name for name in ("Start", "End") if name.upper() not in natures]
    if missing:
        yield Issue(
            f"signed_values has no {' and no '.join(missing)} value (mod_cdrs §10.4.8), so the metered energy cannot "
            "be proven",
            pointer("signed_data", "signed_values"),
        )
