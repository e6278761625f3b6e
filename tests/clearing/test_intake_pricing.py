"""Price verification: matched, within tolerance, mismatch (differences and explanation stored) and unpriceable,
at intake (PostgreSQL and SQLite) and pure, including the tariff-cases test vectors read in place.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.checks import check_cdr
from clearing.document import parse_cdr
from clearing.intake import ClearingService, IntakeItem
from clearing.matching import resolve_tariffs
from clearing.models import ClearingCdrRow, ClearingPriceCheckRow
from clearing.verification import needs_local_time, verify_price
from hub.objects.service import ObjectStore
from tests.clearing.builders import vectors_dir
from tests.clearing.samples import NOW, D, cdr, dump, price, store_world, tariff

CASES = vectors_dir() / "tariff-cases"
# This vector ignores min_price (ADR 0103): the hub bills the spec's 0.50 / 0.55, so the CDR's 0.30 / 0.33 differ.
CONTRADICTS_SPEC = "025kwh_min_price/cdr2_less_than_2kWh.json"


def vectors() -> list[Any]:
    if not CASES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"test vectors not found at {CASES}"), id="none")]
    return [
        pytest.param(str(p.relative_to(CASES)), id=str(p.relative_to(CASES))) for p in sorted(CASES.glob("*/cdr*.json"))
    ]


async def check_row(db: AsyncSession, cdr_id: str = "CDR1") -> ClearingPriceCheckRow:
    record_id = await db.scalar(select(ClearingCdrRow.id).where(ClearingCdrRow.cdr_id == cdr_id))
    row = await db.get(ClearingPriceCheckRow, record_id)
    assert row is not None
    await db.refresh(row)
    return row


async def take_in(db: AsyncSession, service: ClearingService, doc: dict[str, Any]) -> str | None:
    [outcome] = await service.take_in(db, [IntakeItem(dump(doc), "file")])
    return outcome.pricing_state


async def test_matched(db: AsyncSession, store: ObjectStore, service: ClearingService) -> None:
    await store_world(store, db)
    assert await take_in(db, service, cdr()) == "matched"
    row = await check_row(db)
    assert (row.outcome, row.differences, row.explanation, row.error) == ("matched", [], None, None)
    assert (row.time_zone, row.tariff_source, row.tolerance) == ("Europe/Amsterdam", "store", Decimal("0.01"))
    assert row.computed["total_cost"] == {"excl_vat": Decimal("4.0000"), "incl_vat": Decimal("4.0000")}


async def test_within_tolerance(db: AsyncSession, store: ObjectStore, service: ClearingService) -> None:
    await store_world(store, db)
    assert await take_in(db, service, cdr(total_cost=price("4.01"), total_energy_cost=price("4.01"))) == (
        "within_tolerance"
    )
    row = await check_row(db)
    assert {d["field"] for d in row.differences} == {
        "total_cost.excl_vat",
        "total_cost.incl_vat",
        "total_energy_cost.excl_vat",
        "total_energy_cost.incl_vat",
    }
    assert row.explanation is not None


async def test_mismatch_keeps_the_differences_and_the_explanation(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    assert await take_in(db, service, cdr(total_cost=price("5.00"), total_energy_cost=price("5.00"))) == "mismatch"
    row = await check_row(db)
    assert {
        "field": "total_cost.excl_vat",
        "stated": Decimal("5.00"),
        "computed": Decimal("4.0000"),
        "difference": Decimal("1.0000"),
    } in row.differences
    [line] = row.explanation["lines"]
    assert (line["dimension"], line["tariff_id"], line["volume"], line["price"]) == (
        "ENERGY",
        "T1",
        16,
        Decimal("0.25"),
    )
    assert row.explanation["step_adjustments"] == []
    event = (await service.report(db, "NL", "CPO", "CDR1")).events[2]
    assert (event.dimension, event.to_state) == ("pricing", "mismatch")
    assert "total_cost.excl_vat stated 5.00, computed 4.0000" in event.reason


async def test_a_tolerance_of_zero_turns_a_small_difference_into_a_mismatch(
    db: AsyncSession, store: ObjectStore, clock: Any
) -> None:
    await store_world(store, db)
    strict = ClearingService(clock, tolerance=Decimal(0))
    assert await take_in(db, strict, cdr(total_cost=price("4.01"), total_energy_cost=price("4.01"))) == "mismatch"


async def test_unpriceable_without_a_tariff(db: AsyncSession, service: ClearingService) -> None:
    doc = cdr(tariffs=[])
    del doc["charging_periods"][0]["tariff_id"]
    assert await take_in(db, service, doc) == "unpriceable"
    row = await check_row(db)
    assert (row.outcome, row.computed, row.error) == ("unpriceable", None, "no tariff to price the CDR with")


async def test_unpriceable_without_a_time_zone_when_the_tariff_needs_local_time(
    db: AsyncSession, service: ClearingService
) -> None:
    evening = tariff(
        elements=[
            {
                "price_components": [{"type": "ENERGY", "price": D("0.25"), "step_size": 1}],
                "restrictions": {"start_time": "18:00", "end_time": "06:00"},
            },
            {"price_components": [{"type": "ENERGY", "price": D("0.25"), "step_size": 1}]},
        ]
    )
    assert await take_in(db, service, cdr(tariffs=[evening])) == "unpriceable"
    assert "time zone" in ((await check_row(db)).error or "")
    # Without local-time restrictions the zone does not matter and UTC is used.
    assert await take_in(db, service, cdr("CDR2", session_id="S2")) == "matched"
    assert (await check_row(db, "CDR2")).time_zone == "UTC"


def test_verify_price_reports_engine_errors_as_unpriceable() -> None:
    parsed = parse_cdr(dump(cdr()))
    resolution = resolve_tariffs(parsed)
    result = verify_price(parsed, resolution, time_zone="Mars/Olympus_Mons")
    assert (result.outcome, result.computed) == ("unpriceable", None)
    assert "Mars/Olympus_Mons" in (result.error or "")
    assert needs_local_time(resolution.tariffs) is False


def test_a_credit_is_compared_by_size() -> None:
    original = cdr()
    credit = {**original, "id": "CDR1-C", "credit": True, "credit_reference_id": "CDR1", "total_cost": price("-4.00")}
    parsed = parse_cdr(dump(credit))
    assert verify_price(parsed, resolve_tariffs(parsed), time_zone="UTC").outcome == "matched"
    wrong = parse_cdr(dump({**credit, "total_cost": price("-5.00")}))
    assert verify_price(wrong, resolve_tariffs(wrong), time_zone="UTC").outcome == "mismatch"


@pytest.mark.parametrize("name", vectors())
def test_tariff_case_vectors_through_the_preflight(name: str) -> None:
    cdr_path = CASES / name
    report = check_cdr(cdr_path.read_bytes(), (cdr_path.parent / "tariff.json").read_bytes(), now=NOW, time_zone="UTC")
    assert report.price.tariff_source == "given"
    if name == CONTRADICTS_SPEC:
        assert report.price.outcome == "mismatch"
        assert {d.field for d in report.price.differences} == {"total_cost.excl_vat", "total_cost.incl_vat"}
        assert {d.computed for d in report.price.differences} == {Decimal("0.5000"), Decimal("0.5500")}
    else:
        assert (report.price.outcome, report.price.differences) == ("matched", [])
    # The reduced vectors lack ids, party and token: the schema rule says so; pricing does not need them.
    assert "CDR001" in {f.code for f in report.findings}


def test_the_vectors_are_where_the_notes_say(tmp_path: Path) -> None:
    if not CASES.is_dir():
        pytest.skip(f"test vectors not found at {CASES}")
    assert len(list(CASES.glob("*/cdr*.json"))) == 9
