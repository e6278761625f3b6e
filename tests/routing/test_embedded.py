"""The embedded default delivers too: SQLite, the relay and the jobs inside the web process (DESIGN §2, §10)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hub.migrate import upgrade
from hub.parties.models import Platform
from hub.platform.db import create_engine, create_sessionmaker
from hub.runtime import build_runtime
from hub.settings import Settings
from hub.worker import job_context
from routing.delivery import DeliveryHooks, deliver
from routing.outbox import OutboxStatus
from tests.peers import PeerPlatform
from tests.routing.conftest import EMSP, FAST_POLICY, LOCATION_BODY, LOCATION_PATH, Receiver, push, status_becomes
from tests.support.hub_server import HubServer

pytestmark = pytest.mark.embedded


@pytest.fixture
async def sqlite_hub(tmp_path: Path, hub_settings: Settings) -> AsyncIterator[HubServer]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    await asyncio.to_thread(upgrade, url)  # Alembic's env.py runs its own event loop
    engine: AsyncEngine = create_engine(url)
    server = HubServer.bind(msgspec.structs.replace(hub_settings, database_url=url, redis_url=None), engine)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await engine.dispose()


async def test_the_embedded_hub_delivers_from_its_own_process(sqlite_hub: HubServer) -> None:
    rt = build_runtime(sqlite_hub.settings, engine=sqlite_hub.engine)
    try:
        _, token_a = await rt.registry.invite("eMSP A")
        async with PeerPlatform(EMSP) as peer:
            await peer.register(sqlite_hub.versions_url, token_a)
            async with AsyncSession(sqlite_hub.engine) as session:
                platform_id = await session.scalar(
                    select(Platform.id).where(Platform.versions_url == peer.versions_url)
                )
            assert platform_id is not None
            receiver = Receiver(peer, platform_id)
            sessions = create_sessionmaker(sqlite_hub.engine)
            outbox_id = await push(sessions, receiver)
            # Only the hub's lifespan runs a relay here (no Redis), with its default timings.
            await status_becomes(sqlite_hub.engine, outbox_id, OutboxStatus.DELIVERED)
            assert [r.body for r in receiver.puts()] == [LOCATION_BODY]

            # The conditional UPDATE is SQLite's compare-and-set: two runs of one job, one delivery.
            ctx = job_context(rt, policy=FAST_POLICY, hooks=DeliveryHooks())
            await sqlite_hub.stop()  # from here on nothing but this test delivers
            again = await push(sessions, receiver, coalesce=True)
            outcomes = await asyncio.gather(deliver(ctx, again), deliver(ctx, again))
            assert sorted(outcomes) == ["delivered", "skipped"]
            assert [r.path for r in receiver.puts()] == [LOCATION_PATH, LOCATION_PATH]
    finally:
        await rt.client.close()
