"""Validating and pricing one CDR from its facts, and the pre-flight check that stores nothing (clearing notes §4
item 4: "validate this CDR before you send it").

`evaluate` is the core intake runs for every CDR; `check_cdr` is the pure pre-flight: it reads a CDR (and optional
tariffs) from JSON, runs every rule that does not need the database, verifies the price, and returns a report.
`clearing.intake.ClearingService.preflight` does the same with what the database knows, still without writing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from clearing.document import ParsedCdr, RefusedPayload, load_json, parse_cdr
from clearing.facts import Facts, StoreFacts, TariffResolution
from clearing.matching import resolve_tariffs
from clearing.rules import Finding, run_rules, validation_state
from clearing.verification import DEFAULT_TOLERANCE, PriceVerification, verify_price

__all__ = ["CheckReport", "Evaluation", "TariffUseReport", "check_cdr", "evaluate", "given_tariffs", "report_of"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The findings, the validation state and the price verification of one CDR."""

    findings: list[Finding]
    validation_state: str
    price: PriceVerification
    tariffs: TariffResolution


class TariffUseReport(msgspec.Struct, frozen=True, kw_only=True):
    """Which tariff priced the CDR and where it came from (store version, the CDR's copy, ...)."""

    tariff_id: str | None
    source: str
    pointer: str
    version_last_updated: datetime | None = None
    differs_from_cdr_copy: bool = False


class CheckReport(msgspec.Struct, frozen=True, kw_only=True):
    """The pre-flight answer: validation state and findings, tariffs used and price verification."""

    cdr: str
    store_checked: bool
    validation_state: str
    findings: list[Finding]
    tariffs: list[TariffUseReport]
    price: PriceVerification


def location_time_zone(store: StoreFacts | None) -> str | None:
    if store is None or store.location is None:
        return None
    zone = store.location.doc.get("time_zone")
    return zone if isinstance(zone, str) and zone else None


def evaluate(
    cdr: ParsedCdr,
    *,
    tariffs: TariffResolution,
    store: StoreFacts | None,
    now: datetime,
    tolerance: Decimal = DEFAULT_TOLERANCE,
    time_zone: str | None = None,
) -> Evaluation:
    """Run the rules and verify the price of one CDR; ``time_zone`` overrides the stored location's."""
    facts = Facts(cdr=cdr, now=now, tolerance=tolerance, tariffs=tariffs, store=store)
    findings = run_rules(facts)
    price = verify_price(cdr, tariffs, time_zone=time_zone or location_time_zone(store), tolerance=tolerance)
    return Evaluation(findings, validation_state(findings), price, tariffs)


def given_tariffs(data: bytes) -> list[Mapping[str, Any]]:
    """Tariff JSON objects from a document holding one Tariff or a list of them."""
    loaded = load_json(data)
    items = loaded if isinstance(loaded, list) else [loaded]
    if not items or not all(isinstance(item, dict) for item in items):
        raise RefusedPayload("the tariff document must hold a Tariff object or a non-empty list of them")
    return items


def report_of(cdr: ParsedCdr, evaluation: Evaluation, *, store_checked: bool) -> CheckReport:
    return CheckReport(
        cdr=cdr.label,
        store_checked=store_checked,
        validation_state=evaluation.validation_state,
        findings=evaluation.findings,
        tariffs=[
            TariffUseReport(
                tariff_id=use.tariff_id,
                source=use.source,
                pointer=use.pointer,
                version_last_updated=use.version,
                differs_from_cdr_copy=use.embedded_differs,
            )
            for use in evaluation.tariffs.uses
        ],
        price=evaluation.price,
    )


def check_cdr(
    cdr: bytes,
    tariffs: bytes | Sequence[Mapping[str, Any]] | None = None,
    *,
    now: datetime,
    time_zone: str | None = None,
    tolerance: Decimal = DEFAULT_TOLERANCE,
) -> CheckReport:
    """Pre-flight a CDR without the store: rules that need no database, and the price with the CDR's own tariffs
    (or the ``tariffs`` given). Raises `RefusedPayload` when ``cdr`` is not a JSON object.

    A CDR without a usable key is still checked (the schema rule reports the key); its label is then ``?``.
    """
    parsed = parse_cdr(cdr, require_key=False)
    given = given_tariffs(tariffs) if isinstance(tariffs, bytes) else tariffs
    resolution = resolve_tariffs(parsed, given=list(given) if given is not None else None)
    evaluation = evaluate(parsed, tariffs=resolution, store=None, now=now, tolerance=tolerance, time_zone=time_zone)
    return report_of(parsed, evaluation, store_checked=False)
