"""Rules on the tariffs a CDR is priced with (clearing notes §1.6 TRF-EXISTS; §2.4 item 1)."""

from __future__ import annotations

from collections.abc import Iterator

from clearing.facts import Facts
from clearing.rules.base import Issue, Severity, rule


@rule("CDR080", Severity.WARNING, "no tariff to verify the price with", catalogue="TRF-EXISTS")
def some_tariff(facts: Facts) -> Iterator[Issue]:
    if not facts.tariffs.tariffs:
        where = "/tariffs" if facts.store is None else "/cdr_location/connector_id"
        yield Issue(
            "no tariff is known for this CDR: it carries none, references none the hub has, and its connector names "
            "none, so its price cannot be verified",
            where,
        )


@rule("CDR081", Severity.WARNING, "tariff not known at session start", catalogue="TRF-EXISTS")
def tariff_in_store(facts: Facts) -> Iterator[Issue]:
    for use in facts.tariffs.uses:
        if use.tariff_id is None:
            continue
        if use.source == "missing":
            where = "in the hub's store at session start or in the CDR" if facts.store is not None else "in the CDR"
            yield Issue(f"tariff {use.tariff_id} is referenced but found neither {where}", use.pointer)
        elif use.source == "cdr" and facts.store is not None:
            yield Issue(
                f"tariff {use.tariff_id} was not in the hub's store at session start; priced with the CDR's own copy",
                use.pointer,
            )


@rule("CDR082", Severity.WARNING, "the CDR's tariff differs from the version valid at session start",
      catalogue="TRF-EXISTS", store=True)  # fmt: skip
def embedded_tariff_current(facts: Facts) -> Iterator[Issue]:
    for use in facts.tariffs.uses:
        if use.embedded_differs:
            version = use.version.isoformat() if use.version else "?"
            yield Issue(
                f"the CDR's copy of tariff {use.tariff_id} differs from the version the hub held at session start "
                f"(last_updated {version}); priced with the stored version",
                use.embedded_pointer or "/tariffs",
            )


@rule("CDR083", Severity.INFO, "some charging periods name a tariff and some do not", catalogue="TRF-EXISTS")
def period_tariff_ids(facts: Facts) -> Iterator[Issue]:
    periods = [p for p in facts.doc.get("charging_periods") or [] if isinstance(p, dict)]
    named = [p for p in periods if "tariff_id" in p]
    if named and len(named) != len(periods):
        yield Issue(
            f"{len(named)} of {len(periods)} charging periods name a tariff_id; the others are priced with the "
            "tariff valid at session start (ADR 0101)",
            "/charging_periods",
        )
