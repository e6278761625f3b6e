"""Matching at intake: session, token, location and the tariff version valid at session start, with and without
what the hub stored; credit CDRs linked to the CDR they credit; duplicates across CDRs. PostgreSQL and SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.document import load_json, parse_cdr
from clearing.intake import ClearingService, IntakeItem
from clearing.matching import Snapshot
from clearing.models import ClearingCdrRow, ClearingEventRow, ClearingFindingRow
from hub.objects.service import ObjectStore
from hub.platform.clock import FixedClock
from tests.clearing.samples import D, cdr, credit_of, dump, location, price, store_world, tariff


def item(doc: dict[str, Any]) -> IntakeItem:
    return IntakeItem(dump(doc), "file", "test.json")


async def record(db: AsyncSession, cdr_id: str) -> ClearingCdrRow:
    row = (await db.execute(select(ClearingCdrRow).where(ClearingCdrRow.cdr_id == cdr_id))).scalar_one()
    await db.refresh(row)
    return row


async def codes(db: AsyncSession, cdr_id: str) -> set[str]:
    row = await record(db, cdr_id)
    found = await db.execute(select(ClearingFindingRow.code).where(ClearingFindingRow.record_id == row.id))
    return set(found.scalars())


async def events(db: AsyncSession, cdr_id: str) -> list[tuple[str, str | None, str]]:
    row = await record(db, cdr_id)
    found = await db.execute(
        select(ClearingEventRow.dimension, ClearingEventRow.from_state, ClearingEventRow.to_state)
        .where(ClearingEventRow.record_id == row.id)
        .order_by(ClearingEventRow.id)
    )
    return [(r.dimension, r.from_state, r.to_state) for r in found]


async def test_matching_with_everything_stored(db: AsyncSession, store: ObjectStore, service: ClearingService) -> None:
    await store_world(store, db)
    [outcome] = await service.take_in(db, [item(cdr())])
    assert (outcome.validation_state, outcome.pricing_state) == ("ok", "matched")
    row = await record(db, "CDR1")
    assert (row.session_match, row.token_match, row.location_match, row.tariff_source) == (
        "matched",
        "matched",
        "matched",
        "store",
    )
    assert row.links["session"] == {"row_id": 1, "status": "COMPLETED"}
    assert row.links["location"]["time_zone"] == "Europe/Amsterdam"
    assert row.links["tariffs"] == [
        {
            "tariff_id": "T1",
            "source": "store",
            "pointer": "/tariffs/0",
            "version_last_updated": "2025-12-01T00:00:00Z",
            "differs_from_cdr_copy": False,
        }
    ]
    assert (row.emsp_country_code, row.emsp_party_id, row.session_id, row.evse_uid) == ("DE", "MSP", "S1", "EVSE1")
    assert await codes(db, "CDR1") == set()


async def test_matching_without_anything_stored(db: AsyncSession, service: ClearingService) -> None:
    [outcome] = await service.take_in(db, [item(cdr())])
    assert (outcome.validation_state, outcome.pricing_state) == ("warning", "matched")
    row = await record(db, "CDR1")
    assert (row.session_match, row.token_match, row.location_match, row.tariff_source) == (
        "missing",
        "missing",
        "missing",
        "cdr",
    )
    assert await codes(db, "CDR1") == {"CDR051", "CDR060", "CDR070", "CDR081"}


async def test_matching_with_some_objects_stored(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db, with_session=False, with_tariff=False)
    doc = cdr(auth_method="AUTH_REQUEST")
    del doc["session_id"]
    await service.take_in(db, [item(doc)])
    row = await record(db, "CDR1")
    assert (row.session_match, row.token_match, row.location_match, row.tariff_source) == (
        "not_referenced",
        "matched",
        "matched",
        "cdr",
    )
    assert await codes(db, "CDR1") == {"CDR050", "CDR081"}


async def test_a_tariff_changed_after_session_start_prices_with_the_old_version(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    # The CPO raised the price at 10:30, half-way through the 10:00-11:00 session.
    await store.put_tariff(db, "NL", "CPO", "T1", dump(tariff(price="0.30", last_updated="2026-01-01T10:30:00Z")))
    await db.commit()
    start = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert b"0.25" in (await store.tariff_at(db, "NL", "CPO", "T1", start) or b"")
    [old] = await service.take_in(db, [item(cdr())])
    assert old.pricing_state == "matched"
    row = await record(db, "CDR1")
    assert row.links["tariffs"][0]["version_last_updated"] == "2025-12-01T00:00:00Z"
    # A CDR of the next day is priced with the new version; its own copy still says 0.25, which is a finding.
    later = cdr(
        "CDR2",
        session_id="S2",
        start_date_time="2026-01-02T10:00:00Z",
        end_date_time="2026-01-02T11:00:00Z",
        charging_periods=[
            {"start_date_time": "2026-01-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": D(16)}],
             "tariff_id": "T1"}
        ],
        total_cost=price("4.80"),
        total_energy_cost=price("4.80"),
        total_time=D(1),
    )  # fmt: skip
    [new] = await service.take_in(db, [item(later)])
    assert new.pricing_state == "matched"
    assert (await record(db, "CDR2")).links["tariffs"][0]["version_last_updated"] == "2026-01-01T10:30:00Z"
    assert "CDR082" in await codes(db, "CDR2")


async def test_a_tariff_deleted_before_session_start_falls_back_to_the_cdr_copy(
    db: AsyncSession, service: ClearingService
) -> None:
    early = ObjectStore(FixedClock(datetime(2025, 12, 15, tzinfo=UTC)))
    await store_world(early, db)
    assert await early.delete_tariff(db, "NL", "CPO", "T1")
    await db.commit()
    [outcome] = await service.take_in(db, [item(cdr())])
    assert outcome.pricing_state == "matched"
    assert (await record(db, "CDR1")).tariff_source == "cdr"
    assert "CDR081" in await codes(db, "CDR1")


async def test_a_cdr_naming_no_tariff_is_priced_with_its_connector_tariffs(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    doc = cdr(tariffs=[])
    del doc["charging_periods"][0]["tariff_id"]
    [outcome] = await service.take_in(db, [item(doc)])
    assert (outcome.validation_state, outcome.pricing_state) == ("ok", "matched")
    row = await record(db, "CDR1")
    assert row.tariff_source == "location"
    assert row.links["tariffs"][0]["pointer"] == "/cdr_location/connector_id"


async def test_no_tariff_anywhere_is_unpriceable(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", dump(location(evses=[])))
    await db.commit()
    doc = cdr(tariffs=[])
    del doc["charging_periods"][0]["tariff_id"]
    [outcome] = await service.take_in(db, [item(doc)])
    assert outcome.pricing_state == "unpriceable"
    assert {"CDR071", "CDR080"} <= await codes(db, "CDR1")


async def test_a_credit_cdr_is_linked_and_credits_its_original(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    original = cdr()
    await service.take_in(db, [item(original)])
    [outcome] = await service.take_in(db, [item(credit_of(original))])
    # The recomputed price matches the credit by size (its total_cost is negative).
    assert (outcome.validation_state, outcome.pricing_state) == ("ok", "matched")
    credit, credited = await record(db, "CDR1-C"), await record(db, "CDR1")
    assert (credit.credit, credit.credits_record_id) == (True, credited.id)
    assert credit.links["credited_cdr"] == "NL/CPO/CDR1"
    assert (credit.commercial_state, credited.commercial_state) == ("pending", "credited")
    assert (await events(db, "CDR1"))[-1] == ("commercial", "pending", "credited")
    # After the credit a new CDR for the same session is no duplicate.
    await service.take_in(db, [item(cdr("CDR1-R", total_cost=price("3.00"), total_energy_cost=price("3.00")))])
    assert "CDR040" not in await codes(db, "CDR1-R")


async def test_a_credit_that_does_not_negate_is_a_finding(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    await service.take_in(db, [item(cdr())])
    [outcome] = await service.take_in(db, [item(credit_of(cdr(), total_cost=price("-3.50")))])
    assert outcome.validation_state == "error"
    assert "CDR092" in await codes(db, "CDR1-C")
    [second] = await service.take_in(db, [item(credit_of(cdr(), "CDR1-C2"))])
    assert second.validation_state == "error"
    assert "CDR093" in await codes(db, "CDR1-C2")


async def test_a_credit_before_its_original_is_linked_when_the_original_arrives(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    [early] = await service.take_in(db, [item(credit_of(cdr()))])
    assert early.validation_state == "error"
    assert "CDR091" in await codes(db, "CDR1-C")
    [original] = await service.take_in(db, [item(cdr())])
    assert original.status == "accepted"
    credit, credited = await record(db, "CDR1-C"), await record(db, "CDR1")
    assert credited.commercial_state == "credited"
    assert (credit.credits_record_id, credit.validation_state) == (credited.id, "ok")
    assert "CDR091" not in await codes(db, "CDR1-C")
    assert (await events(db, "CDR1-C"))[-1] == ("validation", "error", "ok")


async def test_a_credit_and_its_original_in_one_batch_in_either_order(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    first, second = cdr("A", session_id="S1"), cdr("B", session_id="S1")
    await service.take_in(db, [item(first), item(credit_of(first))])
    await service.take_in(db, [item(credit_of(second)), item(second)])
    for name in ("A", "B"):
        credited, credit = await record(db, name), await record(db, f"{name}-C")
        assert credited.commercial_state == "credited", name
        assert credit.credits_record_id == credited.id, name
        assert "CDR091" not in await codes(db, f"{name}-C"), name
        assert [e for e in await events(db, name) if e[0] == "commercial"] == [("commercial", "pending", "credited")]
    # B arrived after A was credited: no duplicate-session finding for B.
    assert "CDR040" not in await codes(db, "B")


async def test_a_second_cdr_for_one_session_is_an_error(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    await service.take_in(db, [item(cdr("CDR1"))])
    [second] = await service.take_in(db, [item(cdr("CDR2"))])
    assert second.validation_state == "error"
    assert "CDR040" in await codes(db, "CDR2")
    assert "CDR040" not in await codes(db, "CDR1")
    assert (await record(db, "CDR2")).links["same_session"] == ["NL/CPO/CDR1"]


async def test_a_look_alike_under_another_id_and_session_is_flagged(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    await service.take_in(db, [item(cdr("CDR1"))])
    moved = cdr("CDR9", session_id="S9", start_date_time="2026-01-01T10:00:40Z", end_date_time="2026-01-01T11:00:40Z")
    moved["charging_periods"][0]["start_date_time"] = "2026-01-01T10:00:40Z"
    [outcome] = await service.take_in(db, [item(moved)])
    assert await codes(db, "CDR9") == {"CDR041", "CDR051"}
    assert outcome.validation_state == "warning"
    assert (await record(db, "CDR9")).links["look_alikes"] == ["NL/CPO/CDR1"]


async def test_a_charge_replayed_many_times_names_five_look_alikes_and_says_there_are_more(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    # Before the cap every copy carried one finding per earlier copy: findings grew with the square of the copies.
    await store_world(store, db)
    copies = [cdr(f"CDR{n:02d}", session_id=f"S{n:02d}") for n in range(1, 13)]
    await service.take_in(db, [item(doc) for doc in copies[:4]])
    await service.take_in(db, [item(doc) for doc in copies[4:]])  # earlier copies from the database and the batch
    last = await record(db, "CDR12")
    assert last.links["look_alikes"] == [f"NL/CPO/CDR{n:02d}" for n in range(1, 6)]
    assert last.links["more_look_alikes"] is True
    messages = (
        await db.scalars(
            select(ClearingFindingRow.message).where(
                ClearingFindingRow.record_id == last.id, ClearingFindingRow.code == "CDR041"
            )
        )
    ).all()
    assert len(messages) == 6
    assert "and more CDRs like these (only the first 5 are named)" in messages
    assert (await record(db, "CDR03")).links["look_alikes"] == ["NL/CPO/CDR01", "NL/CPO/CDR02"]
    assert (await record(db, "CDR03")).links["more_look_alikes"] is False


async def test_recheck_after_the_session_arrives(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db, with_session=False)
    [outcome] = await service.take_in(db, [item(cdr())])
    assert outcome.validation_state == "warning"
    assert await codes(db, "CDR1") == {"CDR051"}
    await store_world(store, db, with_token=False, with_location=False, with_tariff=False)
    again = await service.recheck_cdr(db, "nl", "cpo", "cdr1", actor="operator:alice")
    assert (again.status, again.validation_state) == ("rechecked", "ok")
    assert await codes(db, "CDR1") == set()
    assert (await record(db, "CDR1")).session_match == "matched"
    assert (await events(db, "CDR1"))[-1] == ("validation", "warning", "ok")


async def test_the_batch_lookup_agrees_with_tariff_at(db: AsyncSession, clock: FixedClock) -> None:
    store = ObjectStore(clock)
    # Versions out of order of arrival, two with the same last_updated (the later arrival wins), then a DELETE.
    for version_price, stamp in (("0.20", "2025-12-01T00:00:00Z"), ("0.40", "2026-01-03T00:00:00Z"),
                                 ("0.30", "2026-01-02T00:00:00Z"), ("0.35", "2026-01-02T00:00:00Z")):  # fmt: skip
        await store.put_tariff(db, "NL", "CPO", "T1", dump(tariff(price=version_price, last_updated=stamp)))
    clock.advance(timedelta(days=-20))  # the DELETE takes effect when received: 2026-01-12
    await store.delete_tariff(db, "NL", "CPO", "T1")
    await db.commit()
    for moment in ("2025-11-30T00:00:00Z", "2025-12-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-02T12:00:00Z",
                   "2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z", "2026-01-20T00:00:00Z"):  # fmt: skip
        parsed = parse_cdr(dump(cdr(start_date_time=moment, end_date_time=moment)))
        snapshot = await Snapshot.load(db, [parsed])
        found = snapshot.version_lookup(parsed)("T1")
        expected = await store.tariff_at(db, "NL", "CPO", "T1", datetime.fromisoformat(moment))
        assert (found.doc if found else None) == (load_json(expected) if expected else None), moment
