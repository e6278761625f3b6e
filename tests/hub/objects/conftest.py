"""Fixtures of the object store tests: the store with a controllable clock, and a database session.

Every database test runs twice: on PostgreSQL (the per-worker database of ``tests/conftest.py``) and on SQLite (the
embedded default, one file per test session migrated with the real migrations), because the store must behave the
same on both. The store never commits, so a test's work lives in its session's open transaction unless it commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hub.migrate import upgrade
from hub.models import Base
from hub.objects.service import ObjectStore
from hub.platform.clock import FixedClock
from hub.platform.db import create_engine, create_sessionmaker


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 2, 1, 8, 0, tzinfo=UTC))


@pytest.fixture
def store(clock: FixedClock) -> ObjectStore:
    return ObjectStore(clock)


@pytest.fixture(scope="session")
async def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('objects') / 'hub.db'}"
    # Alembic's env.py runs its own event loop, so the upgrade runs in a worker thread.
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    yield engine
    await engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_engine(request: pytest.FixtureRequest) -> AsyncEngine:
    # clean_database truncates the PostgreSQL tables; the SQLite file is emptied by `db` below.
    name = "clean_database" if request.param == "postgresql" else "sqlite_engine"
    engine: AsyncEngine = request.getfixturevalue(name)
    return engine


async def _empty_sqlite(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())
        # Autoincrement ids start again from 1, as RESTART IDENTITY does on PostgreSQL.
        if (await connection.execute(text("SELECT name FROM sqlite_master WHERE name='sqlite_sequence'"))).first():
            await connection.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture
async def db(any_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    if any_engine.dialect.name == "sqlite":
        await _empty_sqlite(any_engine)
    async with create_sessionmaker(any_engine)() as session:
        yield session
