"""Delivery through real arq workers on Redis, and what must not lose a push: killed workers, a flushed Redis,
dropped database connections (DESIGN §6)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.platform.clock import SystemClock
from hub.platform.jobs import WAKE_CHANNEL, ArqJobQueue
from hub.runtime import Runtime
from hub.worker import HubWorker, build_background, worker_settings
from routing.delivery import DeliveryPolicy
from routing.outbox import OutboxMessage, OutboxStatus
from routing.relay import OutboxRelay, RelaySettings
from tests.peers import ScriptedResponse, encode_authorization
from tests.routing.conftest import (
    FAST_POLICY,
    FAST_RELAY,
    LOCATION_BODY,
    LOCATION_PATH,
    ConnectPeer,
    HookCalls,
    eventually,
    message,
    push,
    status_becomes,
)
from tests.support.cli import OCPI_HUB, hub_env, run_cli
from tests.support.hub_server import HubServer

Sessions = async_sessionmaker[AsyncSession]

# arq 0.28 closes its pool with redis-py's deprecated close(); nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")


@dataclass
class RunningWorker:
    worker: HubWorker
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop as a process would on SIGTERM: running jobs are cancelled mid-flight."""
        if not self.task.done():
            await self.worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class StartWorker(Protocol):
    async def __call__(
        self, policy: DeliveryPolicy = ..., relay: RelaySettings = ..., *, burst: bool = ...
    ) -> RunningWorker: ...


@pytest.fixture
async def start_worker(quiet_hub: HubServer, calls: HookCalls) -> AsyncIterator[StartWorker]:
    running: list[RunningWorker] = []

    async def start(
        policy: DeliveryPolicy = FAST_POLICY, relay: RelaySettings = FAST_RELAY, *, burst: bool = False
    ) -> RunningWorker:
        options = worker_settings(
            quiet_hub.settings, engine=quiet_hub.engine, policy=policy, hooks=calls.hooks, relay_settings=relay
        )
        worker = HubWorker(**{**options, "handle_signals": False, "poll_delay": 0.05, "burst": burst})
        started = RunningWorker(worker, asyncio.create_task(worker.async_run()))
        running.append(started)
        await eventually(_has_started(worker), what="the worker to start")
        return started

    yield start
    for started in running:
        await started.stop()


def _has_started(worker: HubWorker) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return "hub.relay" in worker.ctx

    return check


async def test_an_arq_worker_delivers(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, start_worker: StartWorker, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    outbox_id = await push(sessions, receiver)
    await start_worker()

    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)
    (received,) = receiver.puts()
    assert (received.method, received.path, received.body) == ("PUT", LOCATION_PATH, LOCATION_BODY)
    assert received.header("authorization") == encode_authorization(receiver.peer.token_b or "", "base64")
    assert received.header("x-correlation-id") == "corr-1"
    assert row.attempts == 1
    assert calls.reachable == [receiver.platform_id]


async def test_a_web_commit_wakes_the_workers_relay_through_redis(
    quiet_hub: HubServer,
    connect_peer: ConnectPeer,
    start_worker: StartWorker,
    runtimes: Callable[..., Runtime],
    redis: Redis,
) -> None:
    receiver = await connect_peer()
    await start_worker(relay=RelaySettings(poll_interval=60.0))  # polls once a minute: only a wake-up is fast

    async def subscribed() -> bool:
        return any(count for _, count in await redis.pubsub_numsub(WAKE_CHANNEL))

    await eventually(subscribed, what="the worker to listen for wake-ups")
    web = runtimes(quiet_hub.settings, quiet_hub.engine)  # a web process's runtime, HUB_REDIS_URL set
    background = build_background(web)
    try:
        outbox_id = await push(web.sessions, receiver)
        await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED, timeout=3.0)
    finally:
        await background.close()


async def test_a_worker_killed_mid_delivery_is_taken_over_after_the_lease(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, start_worker: StartWorker
) -> None:
    receiver = await connect_peer()
    receiver.peer.set_response("PUT", LOCATION_PATH, ScriptedResponse(delay=5.0))
    outbox_id = await push(sessions, receiver)
    policy = DeliveryPolicy(timeout=3.0, lease=1.5, backoff=lambda attempt: 0.1)
    first = await start_worker(policy)

    async def call_in_flight() -> bool:
        return len(receiver.puts()) == 1

    await eventually(call_in_flight, what="the first attempt to reach the receiver")
    await first.stop()  # the receiver is still thinking: the attempt dies with its worker
    leased = await message(quiet_hub.engine, outbox_id)
    assert (leased.status, leased.attempts) == (OutboxStatus.DELIVERING, 1)
    receiver.peer.scripted.clear()

    await start_worker(policy)
    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED, timeout=10.0)
    assert row.attempts == 2
    first_try, second_try = receiver.puts()
    assert first_try.body == second_try.body == LOCATION_BODY
    assert first_try.header("x-request-id") != second_try.header("x-request-id")
    # Not before the lease of the killed attempt ran out: a slow attempt is never doubled while it may still land.
    assert (second_try.at - first_try.at).total_seconds() >= 1.5


async def test_flushing_redis_between_enqueue_and_delivery_loses_nothing(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, start_worker: StartWorker, redis: Redis
) -> None:
    receiver = await connect_peer()
    outbox_id = await push(sessions, receiver)
    queue = await ArqJobQueue.connect(quiet_hub.settings.redis_url or "")
    relay = OutboxRelay(sessions, queue, SystemClock(), FAST_RELAY)
    try:
        assert await relay.run_once() == 1
        assert await redis.zcard("arq:queue") == 1
        await redis.flushdb()  # the job is gone before any worker saw it
        assert await relay.run_once() == 0  # handed out a moment ago: not again at once
        await asyncio.sleep(FAST_RELAY.redispatch_after)
        assert await relay.run_once() == 1  # still due in PostgreSQL: handed out again
    finally:
        await queue.close()
    await start_worker(burst=True)
    await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)
    assert len(receiver.puts()) == 1


async def _terminate_other_backends(database_url: str) -> int:
    url = make_url(database_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        return int(
            await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await connection.close()


async def test_the_relay_recovers_when_database_connections_are_killed(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, start_worker: StartWorker
) -> None:
    receiver = await connect_peer()
    await start_worker()
    first = await push(sessions, receiver)
    await status_becomes(quiet_hub.engine, first, OutboxStatus.DELIVERED)

    killed = 0
    for _ in range(5):  # several times while the relay polls every 0.1 s
        killed += await _terminate_other_backends(quiet_hub.settings.database_url)
        await asyncio.sleep(0.15)
    assert killed > 0
    second = await push(sessions, receiver, object_key="locations/NL/CPA/LOC2")
    await status_becomes(quiet_hub.engine, second, OutboxStatus.DELIVERED)
    assert len(receiver.puts()) == 2


async def test_ocpi_hub_worker_runs_jobs_until_sigterm(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions
) -> None:
    receiver = await connect_peer()
    outbox_id = await push(sessions, receiver)
    env = hub_env(quiet_hub.settings, HUB_REDIS_URL=quiet_hub.settings.redis_url or "")
    process = await asyncio.create_subprocess_exec(
        OCPI_HUB, "worker", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED, timeout=20.0)
    except AssertionError:
        process.kill()
        _, stderr = await process.communicate()
        raise AssertionError(f"ocpi-hub worker did not deliver; its log:\n{stderr.decode()}") from None
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert len(receiver.puts()) == 1


async def test_sigterm_during_a_delivery_still_shuts_the_worker_down_cleanly(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions
) -> None:
    # A delivery cancelled mid-flight: the process still exits 0 after on_shutdown, and the push stays due.
    receiver = await connect_peer()
    receiver.peer.set_response("PUT", LOCATION_PATH, ScriptedResponse(delay=30.0))
    outbox_id = await push(sessions, receiver)
    env = hub_env(quiet_hub.settings, HUB_REDIS_URL=quiet_hub.settings.redis_url or "")
    process = await asyncio.create_subprocess_exec(
        OCPI_HUB, "worker", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:

        async def in_flight() -> bool:
            return len(receiver.puts()) == 1

        await eventually(in_flight, timeout=20.0, what="the delivery to reach the receiver")
    except AssertionError:
        process.kill()
        raise
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    log = stderr.decode()
    assert process.returncode == 0, log
    assert "Traceback" not in log
    assert '"event": "worker stopped"' in log  # on_shutdown ran: message log flushed, connections closed
    async with sessions() as session:
        row = await session.get(OutboxMessage, outbox_id)
    assert row is not None
    assert row.status != OutboxStatus.DELIVERED  # due again once its lease runs out


async def test_close_completes_when_a_cancelled_job_re_raises(start_worker: StartWorker) -> None:
    # The window CI hit: SIGTERM lands while a finished job is still in arq's bookkeeping (a shielded Redis
    # write), so its task ends in CancelledError. arq's own close() gathers it bare, re-raises, skips on_shutdown.
    running = await start_worker()
    bookkeeping = asyncio.create_task(asyncio.sleep(60))
    running.worker.tasks["finished-job"] = bookkeeping
    await running.worker.close()
    assert bookkeeping.cancelled()
    assert "hub.relay" not in running.worker.ctx  # on_shutdown ran
    assert "runtime" not in running.worker.ctx


async def test_ocpi_hub_worker_needs_redis(quiet_hub: HubServer) -> None:
    settings = msgspec.structs.replace(quiet_hub.settings, redis_url=None)
    result = await run_cli("worker", env=hub_env(settings))
    assert result.code != 0
    assert "HUB_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr
