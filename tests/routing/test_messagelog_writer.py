"""The message log writer under a steady stream of records: few transactions, nothing lost (PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.platform.db import create_sessionmaker
from routing.messagelog import MessageLog, MessageLogRow, MessageRecord


def _record(n: int) -> MessageRecord:
    return MessageRecord(
        at=datetime.now(UTC), direction="in", correlation_id=f"c{n}", request_id=f"r{n}", platform_id=None,
        from_party=None, to_party=None, target_platform_id=None, module="locations", method="GET",
        path="/ocpi/2.2.1/sender/locations", http_status=200, ocpi_status=1000, latency_ms=0.5, size_in=0, size_out=10,
    )  # fmt: skip


async def test_a_steady_stream_is_written_once_per_interval(clean_database: AsyncEngine) -> None:
    # Records arrive every millisecond or so, as under load. The writer used to drain until the buffer was empty,
    # and a few records always arrived while a batch committed: one transaction every few milliseconds.
    sessions = create_sessionmaker(clean_database)
    log = MessageLog(sessions, flush_interval=0.2, batch_size=10_000)
    await log.start()
    try:
        sent = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.0
        while loop.time() < until:
            for _ in range(5):
                log.record(_record(sent))
                sent += 1
            await asyncio.sleep(0.002)
    finally:
        await log.stop()
    async with sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(MessageLogRow))
    assert stored == sent > 1000
    # One write per 0.2 s interval over about a second, plus the final flush at stop; draining took dozens.
    assert 4 <= log.transactions <= 9, log.transactions


async def test_a_full_batch_is_written_before_the_interval(clean_database: AsyncEngine) -> None:
    sessions = create_sessionmaker(clean_database)
    log = MessageLog(sessions, flush_interval=30.0, batch_size=100)
    await log.start()
    try:
        for n in range(250):
            log.record(_record(n))
        async with asyncio.timeout(5):
            while log.transactions < 2:
                await asyncio.sleep(0.01)
        async with sessions() as session:
            stored = await session.scalar(select(func.count()).select_from(MessageLogRow))
        assert (stored or 0) >= 200, "full batches do not wait for the 30 s interval"
    finally:
        await log.stop()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(MessageLogRow)) == 250
