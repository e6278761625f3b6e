"""The clearing schedule (clearing.schedule): intake of the CDRs the hub stored, then the close of every period whose
end plus the grace has passed, once cluster-wide; on PostgreSQL and SQLite, and on the embedded default's timer."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from clearing.intake import ClearingService
from clearing.models import ClearingCdrRow, ClearingEventRow
from clearing.schedule import CLOSE_LOCK, SCHEDULE_LOCK, ClearingLock, due_periods, run_scheduled
from clearing.settlement.models import PeriodRow, StatementRow
from clearing.settlement.service import SettlementService
from clearing.settlement.terms import Terms
from hub.migrate import upgrade
from hub.objects.service import ObjectStore
from hub.platform.clock import FixedClock
from hub.platform.db import create_engine, create_sessionmaker
from hub.runtime import build_runtime
from hub.settings import Settings, SettingsError, load_settings
from hub.worker import CLEARING_JOB, build_background, clearing_schedule, worker_settings
from tests.clearing.samples import dump
from tests.clearing.test_settlement import make, take_in

GRACE = timedelta(days=1)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


async def _terms(sessions: async_sessionmaker[AsyncSession], clock: FixedClock) -> None:
    terms = Terms(cpo="NL/CPO", emsp="DE/MSP", valid_from=datetime(2025, 1, 1, tzinfo=UTC), currency="EUR",
                  approval_window_days=0)  # fmt: skip
    async with sessions() as session, session.begin():
        await SettlementService(clock).set_terms(session, terms, actor="test")


async def _store(sessions: async_sessionmaker[AsyncSession], clock: FixedClock, *docs: dict[str, object]) -> None:
    """CDRs as routing stores them when they pass the hub (table ``cdrs``): clearing has not seen them yet."""
    store = ObjectStore(clock)
    async with sessions() as session, session.begin():
        for doc in docs:
            await store.store_cdr(session, str(doc["country_code"]), str(doc["party_id"]), dump(doc))


async def _periods(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with sessions() as session:
        rows = await session.execute(select(PeriodRow.label, PeriodRow.state).order_by(PeriodRow.start))
        return [(label, state) for label, state in rows]


async def test_due_periods_wait_for_the_grace_and_start_where_clearing_starts(
    sessions: async_sessionmaker[AsyncSession], db: AsyncSession, service: ClearingService
) -> None:
    assert await due_periods(db, FEB_1 + timedelta(days=400), GRACE) == [], "an empty clearing creates no periods"
    await take_in(db, service, make("N1", end="2025-11-20T10:00:00Z"), make("J1", end="2026-01-15T11:00:00Z"))
    assert await due_periods(db, FEB_1 + GRACE - timedelta(seconds=1), GRACE) == ["2025-11", "2025-12"]
    assert await due_periods(db, FEB_1 + GRACE, GRACE) == ["2025-11", "2025-12", "2026-01"]
    assert await due_periods(db, FEB_1, timedelta(0)) == ["2025-11", "2025-12", "2026-01"], "grace 0: at the end"

    settlement = SettlementService(FixedClock(FEB_1 + GRACE))
    await settlement.close_period(sessions, "2025-11", actor="test")
    async with sessions() as session:
        assert await due_periods(session, FEB_1 + GRACE, GRACE) == ["2025-12", "2026-01"], "after the last closed"
    async with sessions() as session, session.begin():
        await settlement.ensure_period(session, "2026-02-a", FEB_1, FEB_1 + timedelta(days=10))
    async with sessions() as session:
        # A custom period is due at its own end; the calendar month it overlaps is never created beside it.
        assert await due_periods(session, FEB_1 + timedelta(days=11), GRACE) == ["2025-12", "2026-01", "2026-02-a"]
        assert await due_periods(session, datetime(2026, 3, 2, 1, tzinfo=UTC), GRACE) == [
            "2025-12", "2026-01", "2026-02-a",
        ]  # fmt: skip


async def test_a_run_takes_stored_cdrs_in_and_closes_a_period_only_after_its_grace(
    sessions: async_sessionmaker[AsyncSession], clearing_engine: AsyncEngine
) -> None:
    clock = FixedClock(datetime(2026, 1, 20, tzinfo=UTC))
    await _terms(sessions, clock)
    await _store(sessions, clock, make("J1", "4.00"), make("J2", "2.50", end="2026-01-31T23:30:00Z"))

    clock.advance(FEB_1 + GRACE - timedelta(minutes=1) - clock.now())
    early = await run_scheduled(clearing_engine, sessions, clock, grace=GRACE)
    assert early.ran
    assert early.intake is not None
    assert (early.intake.seen, early.intake.accepted) == (2, 2), "routed CDRs reach clearing through the schedule"
    assert (early.due, early.closed) == ([], [])
    assert await _periods(sessions) == [], "January is not closed before its grace has passed"

    clock.advance(timedelta(minutes=1))
    due = await run_scheduled(clearing_engine, sessions, clock, grace=GRACE)
    assert due.intake is not None
    assert due.intake.seen == 0, "nothing is taken in twice"
    assert [(c.period, c.state, c.already_closed) for c in due.closed] == [("2026-01", "closed", False)]
    assert list(due.closed[0].statements) == ["NL/CPO|DE/MSP|EUR"]
    async with sessions() as session:
        [statement] = await SettlementService(clock).statements(session, "2026-01")
    assert (statement.cdr_count, statement.payable) == (2, Decimal("6.50"))

    again = await run_scheduled(clearing_engine, sessions, clock, grace=GRACE)
    assert (again.due, again.closed) == ([], []), "a closed period is not due again"


async def test_two_concurrent_runs_close_once(clean_database: AsyncEngine, database_url: str) -> None:
    """Two workers (two engines, two connection pools) run the schedule at the same moment."""
    clock = FixedClock(datetime(2026, 1, 20, tzinfo=UTC))
    sessions = create_sessionmaker(clean_database)
    await _terms(sessions, clock)
    await _store(sessions, clock, *(make(f"C{i}", "1.00") for i in range(40)))
    clock.advance(datetime(2026, 3, 5, tzinfo=UTC) - clock.now())
    other = create_engine(database_url)
    try:
        results = await asyncio.gather(
            run_scheduled(clean_database, sessions, clock, grace=GRACE, batch_size=5),
            run_scheduled(other, create_sessionmaker(other), clock, grace=GRACE, batch_size=5),
        )
    finally:
        await other.dispose()
    closes = [(c.period, c.already_closed) for r in results for c in r.closed]
    assert sorted(closes) == [("2026-01", False), ("2026-02", False)], results
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(StatementRow)) == 1
        assert await session.scalar(select(func.count()).select_from(ClearingCdrRow)) == 40
        settled = select(func.count()).where(
            ClearingEventRow.dimension == "settlement", ClearingEventRow.to_state == "settled"
        )
        assert await session.scalar(settled) == 40, "every CDR settled exactly once"


async def test_a_held_lock_makes_the_run_skip_and_the_close_wait(
    clean_database: AsyncEngine, database_url: str
) -> None:
    clock = FixedClock(datetime(2026, 3, 5, tzinfo=UTC))
    sessions = create_sessionmaker(clean_database)
    await _store(sessions, clock, make("H1", "1.00"))
    other = create_engine(database_url)
    try:
        async with ClearingLock(other, SCHEDULE_LOCK).hold() as held:
            assert held
            skipped = await run_scheduled(clean_database, sessions, clock, grace=GRACE)
            assert (skipped.ran, skipped.intake, skipped.closed) == (False, None, [])
        async with ClearingLock(other, CLOSE_LOCK).hold() as held:
            assert held
            waiting = await run_scheduled(clean_database, sessions, clock, grace=GRACE)
            assert waiting.intake is not None
            assert (waiting.intake.accepted, waiting.close_skipped) == (1, "another close is running")
        assert await _periods(sessions) == []
        done = await run_scheduled(clean_database, sessions, clock, grace=GRACE)
        assert [c.period for c in done.closed] == ["2026-01", "2026-02"]
    finally:
        await other.dispose()


@pytest.fixture
async def embedded_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ocpi-hub.db'}"
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.mark.embedded
async def test_the_embedded_default_runs_the_schedule_on_its_timer(embedded_url: str) -> None:
    """No Redis: the web process's background closes the due period by itself, on the runtime's clock."""
    settings = Settings(database_url=embedded_url, secret_key="k", clearing_interval=0.05, clearing_close_grace=3600)
    clock = FixedClock(datetime(2026, 1, 20, tzinfo=UTC))
    runtime = build_runtime(settings, clock=clock)
    await _terms(runtime.sessions, clock)
    await _store(runtime.sessions, clock, make("E1", "3.00"))
    background = build_background(runtime)
    background.start()
    try:
        await asyncio.sleep(0.3)
        assert await _periods(runtime.sessions) == [], "before the end plus the grace nothing closes"
        async with runtime.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(ClearingCdrRow)) == 1, "but intake runs"
        clock.advance(FEB_1 + timedelta(hours=1) - clock.now())
        for _ in range(200):
            if await _periods(runtime.sessions) == [("2026-01", "closed")]:
                break
            await asyncio.sleep(0.05)
        assert await _periods(runtime.sessions) == [("2026-01", "closed")]
    finally:
        await background.close()
        await runtime.close()
    # A second lock file beside the database is what keeps two embedded processes apart.
    assert Path(embedded_url.removeprefix("sqlite+aiosqlite:///") + ".schedule.lock").exists()


async def test_the_worker_registers_a_unique_cron_and_its_job_runs(
    hub_settings: Settings, clean_database: AsyncEngine
) -> None:
    settings = msgspec.structs.replace(hub_settings, redis_url="redis://127.0.0.1:6379/15")
    crons = {job.name: job for job in worker_settings(settings)["cron_jobs"]}
    assert crons[CLEARING_JOB].unique is True
    clock = FixedClock(datetime(2026, 3, 5, tzinfo=UTC))
    runtime = build_runtime(hub_settings, engine=clean_database, clock=clock)
    try:
        await _store(runtime.sessions, clock, make("W1", "1.00"))
        answer = await clearing_schedule({"runtime": runtime})
    finally:
        await runtime.client.close()
    assert answer == {"ran": True, "taken_in": 1, "closed": ["2026-01", "2026-02"], "error": None}


def test_settings_grace_and_interval() -> None:
    defaults = load_settings({"HUB_SECRET_KEY": "k"})
    assert (defaults.clearing_close_grace, defaults.clearing_interval) == (86400.0, 60.0)
    given = load_settings({"HUB_SECRET_KEY": "k", "HUB_CLEARING_CLOSE_GRACE": "0", "HUB_CLEARING_INTERVAL": "5"})
    assert (given.clearing_close_grace, given.clearing_interval) == (0.0, 5.0)
    with pytest.raises(SettingsError, match="HUB_CLEARING_CLOSE_GRACE must be zero or more seconds"):
        load_settings({"HUB_SECRET_KEY": "k", "HUB_CLEARING_CLOSE_GRACE": "-1"})
    with pytest.raises(SettingsError, match="HUB_CLEARING_CLOSE_GRACE must be a number of seconds"):
        load_settings({"HUB_SECRET_KEY": "k", "HUB_CLEARING_CLOSE_GRACE": "a day"})
    with pytest.raises(SettingsError, match="HUB_CLEARING_INTERVAL must be positive"):
        load_settings({"HUB_SECRET_KEY": "k", "HUB_CLEARING_INTERVAL": "0"})


async def test_a_refused_close_is_reported_and_retried_by_the_next_run(
    sessions: async_sessionmaker[AsyncSession], clearing_engine: AsyncEngine
) -> None:
    """The agreement converts USD into EUR at ECB rates; January's close waits for January's rate."""
    clock = FixedClock(datetime(2026, 1, 20, tzinfo=UTC))
    terms = Terms(cpo="NL/CPO", emsp="DE/MSP", valid_from=datetime(2025, 1, 1, tzinfo=UTC), currency="EUR",
                  approval_window_days=0, settlement_currency="EUR", rate_source="ECB")  # fmt: skip
    settlement = SettlementService(clock)
    async with sessions() as session, session.begin():
        await settlement.set_terms(session, terms, actor="test")
    await _store(sessions, clock, make("X1", "10.00", currency="USD"))
    clock.advance(datetime(2026, 2, 3, tzinfo=UTC) - clock.now())
    refused = await run_scheduled(clearing_engine, sessions, clock, grace=GRACE)
    assert refused.closed == []
    assert refused.error is not None
    assert refused.error.startswith("2026-01: no USD/EUR reference rate from ECB")
    async with sessions() as session, session.begin():
        await settlement.set_rate(session, "2026-01", "USD", "EUR", Decimal("0.9"), date(2026, 1, 30), "ECB", actor="t")
    retried = await run_scheduled(clearing_engine, sessions, clock, grace=GRACE)
    assert ([c.period for c in retried.closed], retried.error) == (["2026-01"], None)
    async with sessions() as session:
        [statement] = await settlement.statements(session, "2026-01")
    assert (statement.currency, statement.payable) == ("EUR", Decimal("9.00"))
