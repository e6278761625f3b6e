"""The outbox relay: the only code that enqueues deliveries (DESIGN §6, house style §3.7).

It reads which receivers have due rows (`routing.outbox.due_condition`: open, due, unleased, first in line of their
unit) and enqueues one ``routing.deliver_to`` job per receiver, oldest work first; the job delivers everything due for
that receiver in batches (`routing.delivery.Deliverer.deliver_to`, ADR 0009). The job id names the receiver and the
state of its oldest due row (id, attempts, due time), so the same state handed out twice collapses in the queue and a
changed one gets a new job. The relay writes nothing: what is delivered, leased or due lives in the rows, which the
jobs change. So it keeps only a small in-memory note of what it handed out, to not enqueue the same job again on
every poll; after ``redispatch_after`` seconds it hands it out again, in case the queue lost it (Redis flushed, a
process killed). The queue collapses a duplicate that is still queued and the job is idempotent, so that costs
nothing but one call.

Several relays may run (one per worker process, or per web process on the embedded default); none is needed for
correctness more than any other. A commit that enqueued work wakes the relay of the same process through
`notify` (`routing.outbox.install_wakeup`); otherwise it polls every ``poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.platform.clock import Clock
from routing.delivery import DELIVER_TO_JOB, deliver_to_job_id
from routing.outbox import OutboxMessage, available_condition, is_open

__all__ = ["Enqueuer", "OutboxRelay", "RelaySettings"]

log = structlog.get_logger("routing.relay")


class Enqueuer(Protocol):
    """What the relay needs of a job queue (``hub.platform.jobs.JobQueue`` fits; routing does not import it)."""

    async def enqueue(self, name: str, *args: Any, job_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class RelaySettings:
    #: Receivers handed out per pass at most; a full batch makes the next pass start at once.
    batch_size: int = 500
    #: Seconds between passes when nobody calls `OutboxRelay.notify`.
    poll_interval: float = 0.5
    #: Seconds after which an attempt handed out but still due is handed out again.
    redispatch_after: float = 15.0
    #: Seconds to wait after a pass failed (database restarting, Redis unreachable) before the next one.
    error_backoff: float = 1.0
    #: Seconds a woken relay waits for more wake-ups before its pass: every delivery wakes it (the next push of
    #: that object is due), and a pass per delivery cost more than the deliveries under a fan-out (make bench).
    gather_wakeups: float = 0.01


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        queue: Enqueuer,
        clock: Clock,
        settings: RelaySettings | None = None,
    ) -> None:
        self._sessions = sessions
        self._queue = queue
        self._clock = clock
        self.settings = settings or RelaySettings()
        self._wake = asyncio.Event()
        # receiver platform id -> (job id, monotonic time handed out): what a pass must not repeat.
        self._handed_out: dict[int, tuple[str, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Start the next pass now (call after committing new or re-queued messages)."""
        self._wake.set()

    async def run_once(self) -> int:
        """One pass; returns how many jobs it enqueued (jobs handed out recently are not counted again)."""
        now = self._clock.now()
        async with self._sessions() as session:
            # Each unit's first open row is its head; the oldest head that is available names the receiver's job.
            # (The same rows as `due_condition`, in one pass over the open rows instead of a test per row, which
            # grew with the square of a unit's backlog.)
            heads = (
                select(func.min(OutboxMessage.id).label("id"))
                .where(is_open(OutboxMessage.status))
                .group_by(OutboxMessage.receiver_platform_id, OutboxMessage.object_key)
                .subquery()
            )
            due_heads = (
                select(func.min(OutboxMessage.id))
                .join(heads, OutboxMessage.id == heads.c.id)
                .where(available_condition(now))
                .group_by(OutboxMessage.receiver_platform_id)
                .scalar_subquery()
            )
            rows = (
                await session.execute(
                    select(
                        OutboxMessage.receiver_platform_id,
                        OutboxMessage.id,
                        OutboxMessage.attempts,
                        OutboxMessage.next_attempt_at,
                    )
                    .where(OutboxMessage.id.in_(due_heads))
                    .order_by(OutboxMessage.id)
                    .limit(self.settings.batch_size)
                )
            ).all()
        # The transaction is over before the queue is called: a job may start before this method returns.
        clock = time.monotonic()
        handed_out: dict[int, tuple[str, float]] = {}
        enqueued = 0
        try:
            for platform_id, head_id, attempts, due_at in rows:
                job_id = deliver_to_job_id(platform_id, head_id, attempts, due_at)
                previous = self._handed_out.get(platform_id)
                if (
                    previous is not None
                    and previous[0] == job_id
                    and clock - previous[1] < self.settings.redispatch_after
                ):
                    handed_out[platform_id] = previous
                    continue
                await self._queue.enqueue(DELIVER_TO_JOB, platform_id, job_id=job_id)
                handed_out[platform_id] = (job_id, clock)
                enqueued += 1
        finally:
            # Receivers with nothing due any more drop out of the note; so does whatever the queue refused.
            self._handed_out = handed_out
        return enqueued

    async def run(self) -> None:
        """Pass after pass until cancelled; a failing pass is logged and retried, never fatal."""
        while True:
            self._wake.clear()
            try:
                enqueued = await self.run_once()
            except Exception as exc:
                log.warning("outbox relay pass failed; retrying", error=f"{exc.__class__.__name__}: {exc}")
                await asyncio.sleep(self.settings.error_backoff)
                continue
            if enqueued >= self.settings.batch_size:  # a full batch of new work: more is probably waiting
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            except TimeoutError:
                continue
            await asyncio.sleep(self.settings.gather_wakeups)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
