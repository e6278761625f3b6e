"""Scheduled clearing: take in the CDRs the hub stored, then close every settlement period that is due (ADR 0210).

Routing stores every CDR that passes the hub (table ``cdrs``); clearing learns about them from there (DESIGN §3), not
from routing's code. `run_scheduled` is the one periodic job:

1. intake: `run_sync` takes in the stored CDRs no record or rejection names yet (idempotent, one transaction per
   batch);
2. close: every period whose end plus the grace (``HUB_CLEARING_CLOSE_GRACE``, default one day: late CDRs of the
   month's last hours still arrive) has passed is closed, oldest first (periods close in order). Calendar months
   (UTC) are created as they fall due, from the month after the last closed period, or, before any close, from the
   month of the oldest unsettled CDR; nothing is created while clearing holds nothing.

"Once cluster-wide" (DESIGN §2): the worker's arq cron is ``unique``, and the run holds a lock besides, so two
workers, two embedded web processes or a finance user closing by hand never close concurrently. On PostgreSQL the
lock is a session advisory lock on a dedicated connection (released when the run ends or its process dies); on
SQLite (one machine) it is an exclusive ``flock`` on a file beside the database plus a process-local lock. The close
itself is idempotent as well (`SettlementService.close_period`), so the lock is a guard against wasted work and
racing period creation, not the only line of defence.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final

import msgspec
import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from clearing.intake import DEFAULT_BATCH_SIZE, ClearingService, IntakeSummary, run_sync
from clearing.models import ClearingCdrRow
from clearing.settlement.models import AdjustmentRow, PeriodRow
from clearing.settlement.netting import NettingError
from clearing.settlement.service import CloseResult, PeriodError, SettlementService, month_bounds
from clearing.settlement.terms import TermsError
from clearing.verification import DEFAULT_TOLERANCE
from hub.platform.clock import Clock

__all__ = [
    "CLOSE_LOCK",
    "DEFAULT_GRACE",
    "SCHEDULE_ACTOR",
    "SCHEDULE_LOCK",
    "ClearingLock",
    "ScheduleResult",
    "due_periods",
    "run_scheduled",
]

log = structlog.get_logger("clearing.schedule")

DEFAULT_GRACE: Final = timedelta(days=1)
SCHEDULE_ACTOR: Final = "clearing:schedule"
#: The whole scheduled run (intake and close): a second run skips while one is going.
SCHEDULE_LOCK: Final = "ocpi-hub:clearing:schedule"
#: Closing periods, by the schedule or by hand (admin API): never two at once.
CLOSE_LOCK: Final = "ocpi-hub:clearing:close"

_local_locks: dict[str, asyncio.Lock] = {}


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock`` from the lock's name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class ClearingLock:
    """A cluster-wide, non-blocking lock named ``name``: ``async with lock.hold() as held:``; ``held`` is False when
    another run has it (then do nothing)."""

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self._engine = engine
        self.name = name

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[bool]:
        if self._engine.dialect.name == "postgresql":
            async with self._postgresql() as held:
                yield held
        else:
            async with self._local() as held:
                yield held

    @contextlib.asynccontextmanager
    async def _postgresql(self) -> AsyncIterator[bool]:
        key = _advisory_key(self.name)
        async with self._engine.connect() as connection:
            held = bool(await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
            await connection.commit()  # no transaction stays open on the lock's connection while the run works
            try:
                yield held
            finally:
                if held:
                    await connection.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    await connection.commit()

    @contextlib.asynccontextmanager
    async def _local(self) -> AsyncIterator[bool]:
        lock = _local_locks.setdefault(self.name, asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            path = self._lock_file()
            if path is None:
                yield True
                return
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _lock_file(self) -> Path | None:
        database = self._engine.url.database
        if not database or database == ":memory:":
            return None
        suffix = self.name.rsplit(":", 1)[-1]
        return Path(f"{database}.{suffix}.lock")


class ScheduleResult(msgspec.Struct, kw_only=True):
    """What one scheduled run did. ``ran`` is False when another run held the lock (it then did nothing)."""

    ran: bool
    at: datetime
    intake: IntakeSummary | None = None
    closed: list[CloseResult] = msgspec.field(default_factory=list)
    due: list[str] = msgspec.field(default_factory=list)
    close_skipped: str | None = None
    error: str | None = None


def _month_label(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def _next_month(label: str) -> str:
    _, end = month_bounds(label)
    return _month_label(end)


async def due_periods(session: AsyncSession, now: datetime, grace: timedelta) -> list[str]:
    """Labels of the periods to close at ``now``, oldest first: existing periods not closed, and calendar months not
    created yet, whose end plus ``grace`` is not after ``now``."""
    cutoff = now - grace
    periods = (await session.execute(select(PeriodRow.label, PeriodRow.start, PeriodRow.end, PeriodRow.state))).all()
    due: dict[str, datetime] = {p.label: p.start for p in periods if p.state != "closed" and p.end <= cutoff}
    closed_ends = [p.end for p in periods if p.state == "closed"]
    if closed_ends:
        first = _month_label(max(closed_ends))
    else:
        oldest = [
            await session.scalar(
                select(func.min(ClearingCdrRow.end_date_time)).where(ClearingCdrRow.settlement_state == "unsettled")
            ),
            await session.scalar(select(func.min(AdjustmentRow.created_at)).where(AdjustmentRow.period_id.is_(None))),
            *(p.start for p in periods),
        ]
        known = [moment for moment in oldest if moment is not None]
        if not known:
            return []
        first = _month_label(min(known))
    label = first
    while True:
        start, end = month_bounds(label)
        if end > cutoff:
            break
        overlaps = any(p.start < end and p.end > start for p in periods)
        if not overlaps:
            due[label] = start
        label = _next_month(label)
    return sorted(due, key=lambda name: due[name])


async def run_scheduled(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    grace: timedelta = DEFAULT_GRACE,
    tolerance: Decimal = DEFAULT_TOLERANCE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
    intake_progress: Callable[[IntakeSummary], None] | None = None,
    on_close: Callable[[str], None] | None = None,
) -> ScheduleResult:
    """One run of the clearing schedule: intake of stored CDRs, then every due period closed; safe to run anywhere,
    any number of times (see the module docstring). ``intake_progress`` gets each intake batch's summary,
    ``on_close`` each due period's label before its close and ``progress`` the close's (done, total) CDRs."""
    now = clock.now()
    async with ClearingLock(engine, SCHEDULE_LOCK).hold() as held:
        if not held:
            log.info("clearing schedule already running elsewhere; skipped")
            return ScheduleResult(ran=False, at=now)
        result = ScheduleResult(ran=True, at=now)
        intake = ClearingService(clock, tolerance=tolerance)
        result.intake = await run_sync(
            sessions, intake, batch_size=batch_size, actor=SCHEDULE_ACTOR, progress=intake_progress
        )
        async with ClearingLock(engine, CLOSE_LOCK).hold() as closing:
            if not closing:
                result.close_skipped = "another close is running"
                return result
            async with sessions() as session:
                result.due = await due_periods(session, clock.now(), grace)
            settlement = SettlementService(clock, batch_size=batch_size)
            for label in result.due:
                if on_close is not None:
                    on_close(label)
                try:
                    closed = await settlement.close_period(sessions, label, actor=SCHEDULE_ACTOR, progress=progress)
                # Refused (an earlier custom period still open, a missing reference rate) or an invariant that does not
                # hold: the close rolled back, the period stays due, and the next run tries again after the fix.
                except (PeriodError, NettingError, TermsError) as exc:
                    result.error = f"{label}: {exc}"
                    log.warning("scheduled close refused", period=label, error=str(exc))
                    break
                result.closed.append(closed)
                log.info("period closed by the schedule", period=label, statements=len(closed.statements))
    return result
