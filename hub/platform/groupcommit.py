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
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[Any]]

#: Enough to amortise a commit; small enough that one slow item does not hold many requests.
MAX_BATCH: Final = 64
#: Batches in flight per process: one commits while the next one is being written.
MAX_CONCURRENT: Final = 2


class _Item:
    __slots__ = ("future", "work")

    def __init__(self, work: Work, future: asyncio.Future[Any]) -> None:
        self.work = work
        self.future = future


class GroupCommit:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = MAX_BATCH,
        max_concurrent: int = MAX_CONCURRENT,
    ) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._queue: deque[_Item] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Counters for /metrics and tests: how many batches and items, and how many batches fell back.
        self.batches = 0
        self.items = 0
        self.fallbacks = 0

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in a shared transaction and return its result once that transaction has committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(work, future))
        if self._running < self._max_concurrent:
            self._running += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # shield: a caller that goes away (client disconnect) must not cancel a batch other requests wait on.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
                await self._commit(batch)
        finally:
            self._running -= 1

    async def _commit(self, batch: list[_Item]) -> None:
        self.batches += 1
        self.items += len(batch)
        if len(batch) > 1:
            results: list[Any] = []
            try:
                async with self._sessions.begin() as session:
                    for item in batch:
                        results.append(await item.work(session))
            except Exception:  # any failure: each item again on its own, below
                self.fallbacks += 1
            else:
                for item, result in zip(batch, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
                return
        for item in batch:
            await self._alone(item)

    async def _alone(self, item: _Item) -> None:
        try:
            async with self._sessions.begin() as session:
                result = await item.work(session)
        except BaseException as exc:  # handed to the one request it belongs to
            if not item.future.done():
                item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not item.future.done():
                item.future.set_result(result)
