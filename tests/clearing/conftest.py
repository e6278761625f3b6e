"""Fixtures of the clearing intake tests: the service with a fixed clock, and a database session per dialect.

Database tests run on PostgreSQL (the per-worker database of ``tests/conftest.py``) and on SQLite (the embedded
default: one file per test session, migrated with the real migrations), because intake must behave the same on both.
The pricing tests in this folder use none of these fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from clearing.intake import ClearingService
from hub.migrate import upgrade
from hub.models import Base
from hub.objects.service import ObjectStore
from hub.platform.clock import FixedClock
from hub.platform.db import create_engine, create_sessionmaker
from tests.clearing.samples import NOW


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def service(clock: FixedClock) -> ClearingService:
    return ClearingService(clock)


@pytest.fixture
def store(clock: FixedClock) -> ObjectStore:
    return ObjectStore(clock)


@pytest.fixture(scope="session")
def clearing_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('clearing') / 'hub.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
async def clearing_sqlite_engine(clearing_sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(clearing_sqlite_url)
    yield engine
    await engine.dispose()


async def _empty_sqlite(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())
        if (await connection.execute(text("SELECT name FROM sqlite_master WHERE name='sqlite_sequence'"))).first():
            await connection.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture(params=["postgresql", "sqlite"])
def clearing_engine(request: pytest.FixtureRequest) -> AsyncEngine:
    # clean_database truncates the PostgreSQL tables; the SQLite file is emptied by `sessions` below.
    name = "clean_database" if request.param == "postgresql" else "clearing_sqlite_engine"
    engine: AsyncEngine = request.getfixturevalue(name)
    return engine


@pytest.fixture
async def sessions(clearing_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    if clearing_engine.dialect.name == "sqlite":
        await _empty_sqlite(clearing_engine)
    return create_sessionmaker(clearing_engine)


@pytest.fixture
async def db(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session
