"""The models and the migrations agree, and the migrations run on both PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.migrate import downgrade, upgrade
from hub.models import Base
from hub.platform.db import create_engine


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_match_the_migrated_postgres_schema(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await connection.run_sync(_diff) == []


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_sqlite_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    # Alembic's env.py runs its own event loop, so it runs in a worker thread here.

    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
            assert {t.name for t in Base.metadata.sorted_tables} <= await connection.run_sync(_tables)
        await asyncio.to_thread(downgrade, url, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == {"alembic_version"}
        await asyncio.to_thread(upgrade, url)
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()
