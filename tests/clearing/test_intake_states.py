"""State per CDR in separate dimensions, with an append-only history: who, what, when, why. PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.intake import ClearingService, IntakeItem, UnknownRecordError
from clearing.models import ClearingCdrRow, ClearingEventRow
from clearing.states import COMMERCIAL_TRANSITIONS, STATES, Dimension, StateError, check_commercial_transition
from hub.objects.service import ObjectStore
from hub.platform.clock import FixedClock
from tests.clearing.samples import NOW, cdr, dump, price, store_world


async def test_intake_records_one_state_per_dimension_and_why(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    await store.store_cdr(db, "NL", "CPO", dump(cdr(total_cost=price("5"), total_energy_cost=price("5"))))
    await db.commit()
    await service.sync_from_store(db, actor="job:sync")
    report = await service.report(db, "NL", "CPO", "CDR1")
    record = report.record
    assert (
        record["delivery_state"],
        record["validation_state"],
        record["pricing_state"],
        record["commercial_state"],
        record["settlement_state"],
    ) == ("received", "ok", "mismatch", "pending", "unsettled")
    assert [(e.dimension, e.from_state, e.to_state, e.actor, e.at) for e in report.events] == [
        ("delivery", None, "received", "job:sync", NOW),
        ("validation", "pending", "ok", "job:sync", NOW),
        ("pricing", "pending", "mismatch", "job:sync", NOW),
    ]
    assert report.events[0].reason == "taken in from the hub's CDR store (cdrs row 1)"
    assert report.events[1].reason == "no findings"
    assert report.events[0].details["content_hash"] == record["content_hash"]


async def test_commercial_decisions_follow_the_allowed_moves(
    db: AsyncSession, service: ClearingService, clock: FixedClock
) -> None:
    await service.take_in(db, [IntakeItem(dump(cdr()), "file")])
    clock.advance(timedelta(hours=1))
    await service.set_commercial_state(db, "NL", "CPO", "CDR1", "declined", actor="msp:bob", reason="price too high")
    with pytest.raises(StateError, match="cannot become pending"):
        await service.set_commercial_state(db, "NL", "CPO", "CDR1", "pending", actor="msp:bob", reason="undo")
    clock.advance(timedelta(hours=1))
    await service.set_commercial_state(db, "NL", "CPO", "CDR1", "written_off", actor="cpo:carol", reason="give up")
    with pytest.raises(StateError, match="final"):
        await service.set_commercial_state(db, "NL", "CPO", "CDR1", "approved", actor="msp:bob", reason="late")
    events = [e for e in (await service.report(db, "NL", "CPO", "CDR1")).events if e.dimension == "commercial"]
    assert [(e.from_state, e.to_state, e.actor, e.reason, e.at) for e in events] == [
        ("pending", "declined", "msp:bob", "price too high", NOW + timedelta(hours=1)),
        ("declined", "written_off", "cpo:carol", "give up", NOW + timedelta(hours=2)),
    ]
    with pytest.raises(UnknownRecordError):
        await service.set_commercial_state(db, "NL", "CPO", "NOPE", "approved", actor="x", reason="y")


def test_the_commercial_state_machine() -> None:
    assert set(COMMERCIAL_TRANSITIONS) == set(STATES[Dimension.COMMERCIAL])
    check_commercial_transition("pending", "approved")
    check_commercial_transition("approved", "credited")
    check_commercial_transition("declined", "written_off")
    for current, target in (("approved", "declined"), ("credited", "approved"), ("pending", "written_off")):
        with pytest.raises(StateError):
            check_commercial_transition(current, target)
    with pytest.raises(StateError, match="unknown"):
        check_commercial_transition("pending", "paid")


async def test_the_history_is_append_only(db: AsyncSession, service: ClearingService) -> None:
    await service.take_in(db, [IntakeItem(dump(cdr()), "file")])
    await db.commit()
    with pytest.raises(DBAPIError, match="append-only"):
        await db.execute(update(ClearingEventRow).values(reason="rewritten history"))
    await db.rollback()
    if db.get_bind().dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            await db.execute(delete(ClearingEventRow))
        await db.rollback()
    assert len((await db.execute(select(ClearingEventRow))).all()) == 3
    # The record itself changes (that is what the states are for); its history only grows.
    await db.execute(update(ClearingCdrRow).values(commercial_state="approved"))
    await db.rollback()


async def test_report_of_an_unknown_cdr(db: AsyncSession, service: ClearingService) -> None:
    with pytest.raises(UnknownRecordError, match="NL/CPO/CDR1"):
        await service.report(db, "NL", "CPO", "CDR1")
