"""Fixtures of the delivery tests: a Redis database per xdist worker, a hub whose web process runs no relay, receivers.

The hub under test is started with ``HUB_REDIS_URL`` set, so its web process only publishes wake-ups and every
delivery in a test comes from the relay and the jobs the test starts itself, with short leases and backoffs passed
through constructor parameters.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub.parties.models import Platform
from hub.platform.db import create_sessionmaker
from hub.runtime import Runtime, build_runtime
from hub.settings import Settings
from hub.worker import Background, build_background
from routing import outbox
from routing.delivery import AttemptRecord, DeliveryHooks, DeliveryPolicy
from routing.outbox import OPEN_STATUSES, OutboxMessage, OutboxStatus
from routing.relay import RelaySettings
from tests.conftest import HubFactory, InviteOn
from tests.peers import PeerConfig, PeerPlatform
from tests.support.hub_server import HubServer

REDIS_BASE_URL = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")

#: Quick enough for tests, still with the production shape: lease > timeout, backoff grows.
FAST_POLICY = DeliveryPolicy(max_attempts=3, timeout=1.0, lease=2.0, backoff=lambda attempt: 0.1 * attempt)
FAST_RELAY = RelaySettings(poll_interval=0.1, redispatch_after=1.0, error_backoff=0.2)

EMSP = PeerConfig(roles=[("DE", "EMA", "EMSP", "eMSP A")])
LOCATION_PATH = "/ocpi/2.2.1/locations/receiver/NL/CPA/LOC1"
LOCATION_KEY = "locations/NL/CPA/LOC1"
# Bytes as a CPO sent them: unusual spacing, a number with trailing zeros and an unknown field survive (DESIGN §5).
LOCATION_BODY = b'{"country_code":"NL", "party_id":"CPA","id":"LOC1","coordinates":{"latitude":"52.0"},"x_extra":1.50}'


@pytest.fixture(scope="session")
def redis_url(worker_id: str) -> str:
    """One Redis database per xdist worker (gw0 -> base, gw1 -> base + 1, master -> base).

    ``HUB_TEST_REDIS_DB`` (default 1) moves the base so two test runs on one machine do not flush each other's data.
    """
    base = int(os.environ.get("HUB_TEST_REDIS_DB", "1"))
    index = base + int(worker_id.removeprefix("gw")) if worker_id.startswith("gw") else base
    return f"{REDIS_BASE_URL}/{index}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def _fresh_redis(redis: Redis) -> None:
    """Every test starts with an empty Redis database (FLUSHDB happened in the ``redis`` fixture)."""


@pytest.fixture
async def quiet_hub(hub_factory: HubFactory, redis_url: str) -> HubServer:
    """The real hub; with Redis configured its web process runs no relay of its own."""
    return await hub_factory(redis_url=redis_url)


@pytest.fixture
def embedded_settings(quiet_hub: HubServer) -> Settings:
    """The hub's settings without Redis: what the embedded default would run (in-process queue)."""
    return msgspec.structs.replace(quiet_hub.settings, redis_url=None)


@pytest.fixture
async def runtimes() -> AsyncIterator[Callable[..., Runtime]]:
    made: list[Runtime] = []

    def make(settings: Settings, engine: AsyncEngine) -> Runtime:
        runtime = build_runtime(settings, engine=engine)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.client.close()  # the engine is the test session's: not disposed here


@dataclass
class Receiver:
    peer: PeerPlatform
    platform_id: int

    @property
    def location_url(self) -> str:
        return self.peer.base_url + LOCATION_PATH

    def puts(self, path: str = LOCATION_PATH) -> list[Any]:
        return [r for r in self.peer.find_received(path=path) if r.method in ("PUT", "PATCH", "DELETE")]


ConnectPeer = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def connect_peer(quiet_hub: HubServer, invite_on: InviteOn) -> AsyncIterator[ConnectPeer]:
    """Register a real partner platform with the hub (credentials handshake) and return it with its platform id."""
    peers: list[PeerPlatform] = []

    async def connect(config: PeerConfig | None = None, name: str = "eMSP A") -> Receiver:
        peer = await PeerPlatform(config or EMSP).start()
        peers.append(peer)
        await peer.register(quiet_hub.versions_url, await invite_on(quiet_hub, name))
        async with AsyncSession(quiet_hub.engine) as session, session.begin():
            platform_id = await session.scalar(select(Platform.id).where(Platform.versions_url == peer.versions_url))
            # Whatever the hub itself queued on this registration (HubClientInfo announcements) is not what these
            # tests look at; taking it out of line keeps the receivers' traffic and the hook calls to the test's own.
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status.in_(OPEN_STATUSES))
                .values(status=OutboxStatus.SUPERSEDED)
            )
        assert platform_id is not None
        return Receiver(peer, platform_id)

    yield connect
    for peer in peers:
        await peer.stop()


@pytest.fixture
def sessions(quiet_hub: HubServer) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(quiet_hub.engine)


async def push(
    sessions: async_sessionmaker[AsyncSession],
    receiver: Receiver,
    *,
    method: str = "PUT",
    url: str | None = None,
    body: bytes | None = LOCATION_BODY,
    object_key: str = LOCATION_KEY,
    coalesce: bool = False,
    headers: dict[str, str] | None = None,
) -> int:
    """Enqueue one push and commit, as the broadcaster's transaction does."""
    async with sessions.begin() as session:
        return await outbox.enqueue(
            session,
            receiver_platform_id=receiver.platform_id,
            kind="fanout",
            method=method,
            url=url or receiver.location_url,
            body=body,
            headers=headers if headers is not None else routing_headers(),
            object_key=object_key,
            coalesce=coalesce,
        )


def routing_headers(correlation_id: str = "corr-1") -> dict[str, str]:
    # Broadcast fan-out leg: FROM = hub, TO = the receiver (hub notes §1.9).
    return {
        "X-Correlation-ID": correlation_id,
        "OCPI-from-country-code": "NL",
        "OCPI-from-party-id": "HUB",
        "OCPI-to-country-code": "DE",
        "OCPI-to-party-id": "EMA",
    }


async def message(engine: AsyncEngine, outbox_id: int) -> OutboxMessage:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        row = await session.get(OutboxMessage, outbox_id)
    assert row is not None
    return row


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def status_becomes(engine: AsyncEngine, outbox_id: int, status: str, *, timeout: float = 10.0) -> OutboxMessage:
    async def check() -> bool:
        return (await message(engine, outbox_id)).status == status

    await eventually(check, timeout=timeout, what=f"outbox message {outbox_id} to become {status}")
    return await message(engine, outbox_id)


@dataclass
class HookCalls:
    """Records what the delivery hooks were told (a real callable pair, not a mock)."""

    unreachable: list[int] = field(default_factory=list)
    reachable: list[int] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)

    async def on_unreachable(self, platform_id: int) -> None:
        self.unreachable.append(platform_id)

    async def on_reachable(self, platform_id: int) -> None:
        self.reachable.append(platform_id)

    @property
    def hooks(self) -> DeliveryHooks:
        return DeliveryHooks(
            on_receiver_unreachable=self.on_unreachable,
            on_receiver_reachable=self.on_reachable,
            on_attempt=self.attempts.append,
        )


@pytest.fixture
def calls() -> HookCalls:
    return HookCalls()


@dataclass
class InProcess:
    """Relay + in-process job queue as a web process on the embedded default runs them, with test timings."""

    background: Background
    runtime: Runtime


StartInProcess = Callable[..., InProcess]


@pytest.fixture
async def in_process(
    embedded_settings: Settings, quiet_hub: HubServer, runtimes: Callable[..., Runtime], calls: HookCalls
) -> AsyncIterator[StartInProcess]:
    started: list[Background] = []

    def start(
        policy: DeliveryPolicy = FAST_POLICY, relay: RelaySettings = FAST_RELAY, *, run: bool = True
    ) -> InProcess:
        runtime = runtimes(embedded_settings, quiet_hub.engine)
        background = build_background(runtime, policy=policy, hooks=calls.hooks, relay_settings=relay)
        if run:
            background.start()
        started.append(background)
        return InProcess(background, runtime)

    yield start
    for background in started:
        await background.close()
