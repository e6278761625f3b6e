"""Group commit: small writes from concurrent requests share one transaction (docs/performance.md, ADR 0010).

Every Session PUT and CDR POST that passes the hub is stored before it is forwarded (DESIGN §4). One transaction per
request costs a connection checkout, BEGIN, COMMIT and a WAL flush each; under load that, not the INSERT, limits
the hub. Here requests hand their write to a :class:`GroupCommit` and wait for it: whatever arrived while the
previous batch was committing goes into the next one. Nobody waits for a timer, so a lone request is written at
once; under load a batch holds everything that queued up. Each request is answered only after its batch has
committed, so what the hub acknowledges is as durable as before.

A work item must only touch the database through the session it is given (it may run twice). If any item in a batch
fails, the batch is rolled back and every item runs again in a transaction of its own, which gives each request
exactly the outcome it would have had alone: its own error, or its own commit.

Writes of one kind can also be handed over as data (`GroupCommit.run_bulk`): a batch then runs one bulk function per
kind over all of that kind's payloads, one statement for many requests instead of one per request. A bulk function
answers one outcome per payload, in order; an exception among them is that payload's own refusal (it wrote nothing,
say a CDR that conflicts with a stored one), which does not stop the others from committing. A bulk function that
raises sends the batch back to one transaction per item, as above. The items of one batch were all in flight at once,
so no order among them is promised: bulk kinds run first, in the order they first appear, then the other work. On
PostgreSQL a batch of nothing but bulk writes runs on the asyncpg connection itself, without a session: their
statements commit on their own, and the session cost more than they did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from hub.platform.db import asyncpg_connection

T = TypeVar("T")
P = TypeVar("P")
Work = Callable[[AsyncSession], Awaitable[Any]]
#: Writes many payloads of one kind: one outcome per payload, an exception being its refusal. It is given a session,
#: or on PostgreSQL, when a batch holds nothing but bulk writes, the asyncpg connection itself (the statements commit
#: on their own there, and a session per batch cost more than the statement: see `GroupCommit._commit`).
Bulk = Callable[[AsyncSession | Any, list[P]], Awaitable[Sequence[T | Exception]]]

#: Enough to amortise a commit; small enough that one slow item does not hold many requests.
MAX_BATCH: Final = 64
#: Batches in flight per process: one commits while the next one is being written.
MAX_CONCURRENT: Final = 2
#: Seconds a committer keeps its connection after the queue ran empty, waiting for the next write. Under load the next
#: one comes within a millisecond or two; checking a connection out again costs a ping (pool_pre_ping) each time.
LINGER: Final = 0.05


class _Item:
    __slots__ = ("bulk", "future", "payload", "work")

    def __init__(
        self,
        future: asyncio.Future[Any],
        *,
        work: Work | None = None,
        bulk: Bulk[Any, Any] | None = None,
        payload: Any = None,
    ) -> None:
        self.future = future
        self.work = work
        self.bulk = bulk
        self.payload = payload

    def settle(self, outcome: Any) -> None:
        if self.future.done():
            return
        if isinstance(outcome, Exception):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


class GroupCommit:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = MAX_BATCH,
        max_concurrent: int = MAX_CONCURRENT,
        linger: float = LINGER,
    ) -> None:
        self._sessions = sessions
        engine = sessions.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("GroupCommit needs a sessionmaker bound to an AsyncEngine")
        self._engine = engine
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._queue: deque[_Item] = deque()
        self._running = 0
        self._linger = linger
        self._arrived = asyncio.Event()
        self._idle = 0  # committers holding a connection while they wait for work
        self._tasks: set[asyncio.Task[None]] = set()
        #: Counters for /metrics and tests: how many batches and items, and how many batches fell back.
        self.batches = 0
        self.items = 0
        self.fallbacks = 0

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in a shared transaction and return its result once that transaction has committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        return await self._enqueue(_Item(future, work=work), future)

    async def run_bulk(self, bulk: Bulk[P, T], payload: P) -> T:
        """Write ``payload`` with the other payloads of ``bulk`` that share its transaction; its outcome once committed.

        Payloads are grouped by ``bulk`` (bound methods of one object compare equal, so ``store.put_sessions`` does).
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        return await self._enqueue(_Item(future, bulk=bulk, payload=payload), future)

    async def _enqueue(self, item: _Item, future: asyncio.Future[T]) -> T:
        self._queue.append(item)
        self._arrived.set()
        if self._running < self._max_concurrent and not self._idle:
            self._running += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # shield: a caller that goes away (client disconnect) must not cancel a batch other requests wait on.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._queue:
                # One connection for a run of batches, kept a moment after the queue ran empty: checking one out of
                # the pool per batch cost a ping round trip each (pool_pre_ping), a fifth of a stored write's database
                # time in the routing profile. After a failed batch the next one takes a fresh connection (the old
                # one may be what failed).
                try:
                    connection = await self._engine.connect()
                except Exception:
                    # No connection at all (the database is down): each waiting item gets its own attempt on the
                    # pool and so its own error, rather than waiting for a connection nobody will retry.
                    for item in self._take():
                        await self._alone(item)
                    continue
                try:
                    driver = await _driver(connection)
                    while await self._more():
                        if not await self._commit(connection, driver, self._take()):
                            break
                finally:
                    with contextlib.suppress(Exception):  # a broken connection is discarded all the same
                        await connection.close()
        finally:
            self._running -= 1

    def _take(self) -> list[_Item]:
        return [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]

    async def _more(self) -> bool:
        """Whether there is work, waiting up to the linger time for some while the connection stays checked out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        while not self._queue:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._arrived.clear()
            self._idle += 1
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return bool(self._queue)
            finally:
                self._idle -= 1
        return True

    async def _commit(self, connection: AsyncConnection, driver: Any | None, batch: list[_Item]) -> bool:
        """Write ``batch`` on ``connection``, in one transaction unless it is bulk writes only (each statement then
        commits on its own); on any failure each item again on its own."""
        self.batches += 1
        self.items += len(batch)
        try:
            if driver is not None and all(item.bulk is not None for item in batch):
                # Only bulk writes (Session PUTs, CDRs): their statements go straight to asyncpg and commit on their
                # own, so the session around them did nothing but cost: its greenlet switches, begin and commit
                # were 0.3-0.4 ms and ~100 us of CPU per batch, most of a stored write's time at light load, where a
                # batch is one write.
                outcomes = await _apply(driver, batch)
            else:
                async with self._sessions(bind=connection) as session, session.begin():
                    outcomes = await _apply(session, batch)
        except Exception:
            # One item's error, or the connection itself (a database restart): every item runs again in a transaction
            # of its own on a connection the pool has checked, so each gets exactly its own outcome.
            if len(batch) > 1:
                self.fallbacks += 1
            for item in batch:
                await self._alone(item)
            return False
        for item, outcome in zip(batch, outcomes, strict=True):
            item.settle(outcome)
        return True

    async def _alone(self, item: _Item) -> None:
        try:
            async with self._sessions.begin() as session:
                (outcome,) = await _apply(session, [item])
        except BaseException as exc:  # handed to the one request it belongs to
            if not item.future.done():
                item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            item.settle(outcome)


async def _driver(connection: AsyncConnection) -> Any | None:
    """The asyncpg connection bulk-only batches run on (PostgreSQL); None elsewhere, or if it cannot be had."""
    try:
        return await asyncpg_connection(connection)
    except Exception:  # the session path works on any connection; its own errors then reach the items as usual
        return None


async def _apply(session: AsyncSession | Any, batch: list[_Item]) -> list[Any]:
    """Every item's outcome in ``session``, in batch order: bulk kinds first (one call each), then the other work."""
    outcomes: list[Any] = [None] * len(batch)
    kinds: dict[Bulk[Any, Any], list[int]] = {}
    for index, item in enumerate(batch):
        if item.bulk is not None:
            kinds.setdefault(item.bulk, []).append(index)
    for bulk, indexes in kinds.items():
        results = await bulk(session, [batch[index].payload for index in indexes])
        if len(results) != len(indexes):
            raise RuntimeError(f"{bulk!r} answered {len(results)} outcomes for {len(indexes)} payloads")
        for index, result in zip(indexes, results, strict=True):
            outcomes[index] = result
    for index, item in enumerate(batch):
        if item.work is not None:
            outcomes[index] = await item.work(session)
    return outcomes
