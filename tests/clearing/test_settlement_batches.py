"""The period close streams in batches (ADR 0208, 0211): approvals past the window are written once per batch, with
each CDR's history in order (approved, then settled), whatever the batch size. PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clearing.intake import ClearingService, IntakeItem
from clearing.models import ClearingCdrRow, ClearingEventRow
from clearing.settlement.service import SettlementService
from clearing.settlement.terms import Terms
from hub.platform.clock import FixedClock
from tests.clearing.samples import cdr, credit_of, dump

JAN = datetime(2026, 1, 1, tzinfo=UTC)


def month_cdrs(count: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for number in range(count):
        start = JAN + timedelta(days=1 + number % 25, hours=number % 12)
        doc = cdr(
            f"C{number}",
            session_id=f"S{number}",
            start_date_time=start.isoformat().replace("+00:00", "Z"),
            end_date_time=(start + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        )
        doc["charging_periods"][0]["start_date_time"] = doc["start_date_time"]
        docs.append(doc)
    return [*docs, credit_of(docs[0])]


@pytest.mark.parametrize("batch_size", [2, 1000])
async def test_approvals_past_the_window_are_written_per_batch(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    clock: FixedClock,
    batch_size: int,
) -> None:
    settlement = SettlementService(clock, batch_size=batch_size)
    async with sessions() as session, session.begin():
        await settlement.set_terms(
            session,
            Terms(cpo="NL/CPO", emsp="DE/MSP", valid_from=JAN, currency="EUR", approval_window_days=5),
            actor="op:ann",
        )
    await service.take_in(db, [IntakeItem(dump(doc), "file") for doc in month_cdrs(9)])
    await db.commit()
    clock.advance(timedelta(days=6))  # every pending CDR is past its window at the close
    await settlement.close_period(sessions, "2026-01")
    async with sessions() as session:
        [statement] = await settlement.statements(session, "2026-01")
        records = (await session.execute(select(ClearingCdrRow).order_by(ClearingCdrRow.id))).scalars().all()
        events = (
            (
                await session.execute(
                    select(ClearingEventRow)
                    .where(ClearingEventRow.dimension.in_(["commercial", "settlement"]))
                    .order_by(ClearingEventRow.id)
                )
            )
            .scalars()
            .all()
        )
    history: dict[int, list[tuple[str, str | None, str]]] = {}
    for event in events:
        history.setdefault(event.record_id, []).append((event.dimension, event.from_state, event.to_state))
    notes = {line.details["cdr_id"]: line.note for line in statement.lines if line.kind == "cdr" and line.details}
    assert len(notes) == 10  # every CDR has its line
    for record in records:
        assert record.settlement_state == "settled"
        if record.credit:  # a credit CDR settles as such; it is not approved
            assert notes[record.cdr_id] == "credit"
            assert history[record.id] == [("settlement", "unsettled", "settled")]
        elif record.cdr_id == "C0":  # credited at intake
            assert record.commercial_state == "credited"
        else:
            assert (record.commercial_state, notes[record.cdr_id]) == ("approved", "auto_approved")
            assert history[record.id] == [("commercial", "pending", "approved"), ("settlement", "unsettled", "settled")]
    assert statement.cdr_count == 10
