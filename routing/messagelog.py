"""The message log: one row per request that enters the hub and per call the hub makes (DESIGN §5).

Writing a row per request inline would put a database round trip on every roaming call, so records go to an
in-memory buffer that a background task writes in batches. If the database is down the buffer keeps the newest
records up to a bound and counts what it had to drop; routing never waits for the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import datetime
from typing import NamedTuple

import structlog
from sqlalchemy import Float, Integer, String, Text, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from hub.platform.clock import iso_utc
from hub.platform.db import Base, UtcDateTime, asyncpg_connection

log = structlog.get_logger("routing.messagelog")


class MessageLogRow(Base):
    __tablename__ = "message_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    direction: Mapped[str] = mapped_column(String(4))  # "in": a request to the hub; "out": a call the hub made
    correlation_id: Mapped[str] = mapped_column(String(64), index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    platform_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the caller ("in") or the callee ("out")
    from_party: Mapped[str | None] = mapped_column(String(6))
    to_party: Mapped[str | None] = mapped_column(String(6))
    target_platform_id: Mapped[int | None] = mapped_column(Integer)
    module: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    ocpi_status: Mapped[int | None] = mapped_column(Integer, index=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    size_in: Mapped[int] = mapped_column(Integer)
    size_out: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class MessageRecord(NamedTuple):
    """One line of the message log. A tuple already, so a batch goes to COPY as it is: building the row tuple field
    by field cost two generator runs per routed request."""

    at: datetime
    direction: str
    correlation_id: str
    request_id: str
    platform_id: int | None
    from_party: str | None
    to_party: str | None
    target_platform_id: int | None
    module: str
    method: str
    path: str
    http_status: int | None
    ocpi_status: int | None
    latency_ms: float
    size_in: int
    size_out: int
    error: str | None = None


_COLUMNS = list(MessageRecord._fields)


class MessageLog:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        flush_interval: float = 0.25,
        batch_size: int = 1000,
        max_buffer: int = 200_000,
    ) -> None:
        self._sessions = sessions
        self._interval = flush_interval
        self._batch = batch_size
        self._buffer: deque[MessageRecord] = deque(maxlen=max_buffer)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.transactions = 0  # written batches, for tests and /metrics

    def record(self, record: MessageRecord) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1  # the oldest record falls off the deque
        self._buffer.append(record)
        if len(self._buffer) >= self._batch:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="message-log-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                # Only what is buffered now. Draining until the buffer was empty kept the writer busy under load:
                # a dozen rows arrive while one transaction commits, so it wrote a transaction (a pool checkout
                # with its ping, BEGIN, COPY, COMMIT and a WAL flush) every couple of milliseconds instead of one
                # per interval, several percent of a routed GET's CPU and most of PostgreSQL's.
                await self.flush(limit=len(self._buffer))
            except Exception:  # keep the records (bounded) and try again on the next round
                log.exception("message log write failed", buffered=len(self._buffer))

    async def flush(self, *, limit: int | None = None) -> int:
        """Write buffered records in batches: all of them, or the first ``limit``; how many were written."""
        written = 0
        while self._buffer and (limit is None or written < limit):
            size = len(self._buffer) if limit is None else min(len(self._buffer), limit - written)
            batch = [self._buffer.popleft() for _ in range(min(self._batch, size))]
            try:
                async with self._sessions.begin() as session:
                    connection = await session.connection()
                    driver = await asyncpg_connection(connection)
                    if driver is not None:
                        # COPY is several times cheaper than INSERT for PostgreSQL and for us: at thousands of
                        # requests a second this log is the hub's largest write.
                        await driver.copy_records_to_table(MessageLogRow.__tablename__, records=batch, columns=_COLUMNS)
                    else:
                        await connection.execute(insert(MessageLogRow), [r._asdict() for r in batch])
            except Exception:
                self._buffer.extendleft(reversed(batch))
                raise
            self.transactions += 1
            written += len(batch)
        return written


async def search(
    session: AsyncSession,
    *,
    correlation_id: str | None = None,
    platform_id: int | None = None,
    party: str | None = None,
    module: str | None = None,
    ocpi_status: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[MessageLogRow]:
    """Rows matching every given filter, oldest first for one correlation id (its path across hops), else newest."""
    query = select(MessageLogRow)
    if correlation_id is not None:
        query = query.where(MessageLogRow.correlation_id == correlation_id)
    if platform_id is not None:
        query = query.where(
            or_(MessageLogRow.platform_id == platform_id, MessageLogRow.target_platform_id == platform_id)
        )
    if party is not None:
        query = query.where(or_(MessageLogRow.from_party == party, MessageLogRow.to_party == party))
    if module is not None:
        query = query.where(MessageLogRow.module == module)
    if ocpi_status is not None:
        query = query.where(MessageLogRow.ocpi_status == ocpi_status)
    if since is not None:
        query = query.where(MessageLogRow.at >= since)
    if until is not None:
        query = query.where(MessageLogRow.at < until)
    # Rows are written when a call ends, so an inbound request is written after the calls it caused; its `at` is
    # when it arrived, which puts a trace in the order things happened.
    order = (
        (MessageLogRow.at.asc(), MessageLogRow.id.asc())
        if correlation_id is not None
        else (MessageLogRow.at.desc(), MessageLogRow.id.desc())
    )
    return list((await session.scalars(query.order_by(*order).limit(limit))).all())


def as_dict(row: MessageLogRow) -> dict[str, object]:
    return {
        "id": row.id,
        "at": iso_utc(row.at),
        "direction": row.direction,
        "correlation_id": row.correlation_id,
        "request_id": row.request_id,
        "platform_id": row.platform_id,
        "from": row.from_party,
        "to": row.to_party,
        "target_platform_id": row.target_platform_id,
        "module": row.module,
        "method": row.method,
        "path": row.path,
        "http_status": row.http_status,
        "ocpi_status": row.ocpi_status,
        "latency_ms": round(row.latency_ms, 3),
        "size_in": row.size_in,
        "size_out": row.size_out,
        "error": row.error,
    }
