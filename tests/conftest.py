"""Shared fixtures: a PostgreSQL database per xdist worker built by the real migrations, and the hub on loopback.

Tests that touch the database run with real commits (hub and partner apps use their own connections), so each one
starts from empty tables: the ``clean_database`` fixture truncates every table of the schema before the test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.migrate import upgrade
from hub.models import Base
from hub.platform.db import create_engine
from hub.runtime import Runtime, build_runtime
from hub.settings import Settings
from tests.support.hub_server import ADMIN_TOKEN, HubServer

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ADMIN_URL = os.environ.get("HUB_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


async def _recreate_database(name: str) -> None:
    url = make_url(ADMIN_URL)
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_database(name: str) -> None:
    url = make_url(ADMIN_URL)
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def database_url(worker_id: str) -> Iterator[str]:
    """A fresh database for this xdist worker and run, at the migrations' head (never create_all).

    The run's process id is part of the name so two runs on one machine (two developers, a developer and CI) never
    drop each other's database.
    """
    name = f"hub_test_{worker_id}_{os.getpid()}"
    asyncio.run(_recreate_database(name))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(_drop_database(name))


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5, max_overflow=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def clean_database(engine: AsyncEngine) -> AsyncEngine:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture
def hub_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        public_url="http://127.0.0.1:1",  # replaced by the bound port
        country_code="NL",
        party_id="HUB",
        hub_name="Test Hub",
        allow_private_peers=True,
        secret_key="test-secret-key",
        admin_token=ADMIN_TOKEN,
        partner_timeout=2.0,
        # The embedded clearing schedule stays out of tests that do not ask for it (tests/clearing/test_schedule.py).
        clearing_interval=3600.0,
    )


HubFactory = Callable[..., Awaitable[HubServer]]


@pytest.fixture
async def hub_factory(clean_database: AsyncEngine, hub_settings: Settings) -> AsyncIterator[HubFactory]:
    started: list[HubServer] = []

    async def start(**overrides: Any) -> HubServer:
        base = msgspec.structs.replace(hub_settings, **overrides)
        server = HubServer.bind(base, clean_database)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def hub(hub_factory: HubFactory) -> HubServer:
    return await hub_factory()


InviteOn = Callable[..., Awaitable[str]]


@pytest.fixture
async def invite_on() -> AsyncIterator[InviteOn]:
    """Issue a token A on a given hub, as ``ocpi-hub parties invite`` does, over the same database."""
    runtimes: list[Runtime] = []

    async def issue(server: HubServer, name: str = "partner") -> str:
        rt = build_runtime(server.settings, engine=server.engine)
        runtimes.append(rt)
        _, token_a = await rt.registry.invite(name)
        return token_a

    yield issue
    for rt in runtimes:
        await rt.client.close()


@pytest.fixture
def invite(hub: HubServer, invite_on: InviteOn) -> Callable[..., Awaitable[str]]:
    async def issue(name: str = "partner") -> str:
        return await invite_on(hub, name)

    return issue
