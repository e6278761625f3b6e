"""Traffic per minute and module from the message log (the dashboard's overview), on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub.migrate import upgrade
from hub.platform.db import create_engine, create_sessionmaker
from routing.messagelog import MessageLog, MessageLogRow, MessageRecord
from routing.traffic import traffic_per_minute

NOW = datetime(2026, 11, 28, 9, 30, 40, tzinfo=UTC)


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('traffic') / 'hub.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def traffic_engine(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    # A synchronous fixture: the PostgreSQL database fixture creates its database with asyncio.run.
    if request.param == "postgresql":
        request.getfixturevalue("clean_database")
        return "postgresql"
    return sqlite_url


@pytest.fixture
async def sessions(
    request: pytest.FixtureRequest, traffic_engine: str
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if traffic_engine == "postgresql":
        engine: AsyncEngine = request.getfixturevalue("clean_database")
        yield create_sessionmaker(engine)
        return
    engine = create_engine(traffic_engine)
    async with engine.begin() as connection:
        await connection.execute(delete(MessageLogRow))
    yield create_sessionmaker(engine)
    await engine.dispose()


def _record(
    at: datetime, module: str, direction: str = "in", http: int | None = 200, ocpi: int | None = 1000
) -> MessageRecord:
    return MessageRecord(
        at=at, direction=direction, correlation_id="c", request_id="r", platform_id=1, from_party="DE/EMA",
        to_party="NL/CPA", target_platform_id=2, module=module, method="GET", path="/ocpi/2.2.1/x", http_status=http,
        ocpi_status=ocpi, latency_ms=1.0, size_in=0, size_out=0,
    )  # fmt: skip


async def test_requests_and_errors_per_minute_and_module(sessions: async_sessionmaker[AsyncSession]) -> None:
    log = MessageLog(sessions)
    minute = NOW.replace(second=0, microsecond=0)
    for record in (
        _record(minute + timedelta(seconds=5), "locations"),
        _record(minute + timedelta(seconds=30), "locations", ocpi=2001),  # a client error
        _record(minute + timedelta(seconds=31), "locations", direction="out"),  # the hub's own call: not traffic in
        _record(minute - timedelta(minutes=1, seconds=-59), "cdrs", http=None, ocpi=None),  # no answer at all
        _record(minute - timedelta(minutes=1), "cdrs", http=502, ocpi=None),
        _record(minute - timedelta(minutes=1), "locations", http=200, ocpi=4001),  # a hub error
        _record(minute - timedelta(minutes=10), "tokens"),  # before the window
        _record(minute + timedelta(minutes=1), "tokens"),  # a clock ahead of ours: not counted
    ):
        log.record(record)
    await log.flush()
    async with sessions() as session:
        summary = await traffic_per_minute(session, now=NOW, minutes=5)
    assert summary.since == minute - timedelta(minutes=4)
    assert [(r.minute, r.module, r.requests, r.errors) for r in summary.rows] == [
        (minute - timedelta(minutes=1), "cdrs", 2, 2),
        (minute - timedelta(minutes=1), "locations", 1, 1),
        (minute, "locations", 2, 1),
    ]
    assert (summary.requests, summary.errors, summary.error_rate) == (5, 4, 0.8)
    assert summary.modules() == ["locations", "cdrs"], "busiest first"


async def test_no_traffic_has_no_error_rate(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        summary = await traffic_per_minute(session, now=NOW, minutes=30)
    assert (summary.rows, summary.requests, summary.error_rate) == ([], 0, None)
