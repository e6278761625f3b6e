"""Batched delivery (ADR 0009): the relay hands out one ``routing.deliver_to`` job per receiver, which leases that
receiver's due messages in lines per object, sends them and records the outcomes in bulk. The guarantees of DESIGN
§6 must hold across and within batches: order per (receiver, object), coalescing, retries and OFFLINE, a killed
worker's batch delivered again, and runs that may happen twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub.migrate import upgrade
from hub.parties.models import Platform
from hub.platform.clock import SystemClock
from hub.platform.db import create_engine, create_sessionmaker
from hub.platform.jobs import ArqJobQueue, JobContext
from hub.runtime import build_runtime
from hub.settings import Settings
from hub.worker import HubWorker, job_context, worker_settings
from routing import outbox
from routing.delivery import DeliveryHooks, DeliveryPolicy, deliver_to
from routing.outbox import OPEN_STATUSES, OutboxMessage, OutboxStatus
from routing.relay import OutboxRelay
from tests.peers import PeerConfig, PeerPlatform, ScriptedResponse
from tests.routing.conftest import (
    EMSP,
    FAST_POLICY,
    FAST_RELAY,
    LOCATION_BODY,
    LOCATION_KEY,
    LOCATION_PATH,
    ConnectPeer,
    HookCalls,
    Receiver,
    StartInProcess,
    eventually,
    message,
    push,
    routing_headers,
    status_becomes,
)
from tests.support.hub_server import HubServer

Sessions = async_sessionmaker[AsyncSession]

# arq 0.28 closes its pool with redis-py's deprecated close(); nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")

LOC2_PATH = LOCATION_PATH.replace("LOC1", "LOC2")
LOC2_KEY = "locations/NL/CPA/LOC2"


def _patch(n: int) -> bytes:
    return b'{"status":"%d"}' % n


async def _patches(sessions: Sessions, receiver: Receiver, count: int, *, loc2: bool = False) -> list[int]:
    url, key = (receiver.peer.base_url + LOC2_PATH, LOC2_KEY) if loc2 else (receiver.location_url, LOCATION_KEY)
    return [
        await push(sessions, receiver, method="PATCH", url=url, body=_patch(n), object_key=key) for n in range(count)
    ]


def _bodies(receiver: Receiver, path: str = LOCATION_PATH) -> list[bytes]:
    return [r.body for r in receiver.puts(path)]


def _context(in_process: StartInProcess, calls: HookCalls, policy: DeliveryPolicy = FAST_POLICY) -> JobContext:
    """The job context of a process that runs no relay: the test runs ``routing.deliver_to`` itself."""
    return job_context(in_process(run=False).runtime, policy=policy, hooks=calls.hooks)


async def test_order_holds_within_and_across_batches(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess
) -> None:
    receiver = await connect_peer()
    loc1 = await _patches(sessions, receiver, 12)
    loc2 = await _patches(sessions, receiver, 5, loc2=True)
    # Four messages per batch: each object's line is cut and continued in the next batch, several times.
    in_process(policy=dataclasses.replace(FAST_POLICY, batch_size=4))
    for outbox_id in loc1 + loc2:
        row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)
        assert row.attempts == 1
    assert _bodies(receiver) == [_patch(n) for n in range(12)]
    assert _bodies(receiver, LOC2_PATH) == [_patch(n) for n in range(5)]


async def test_a_batch_run_twice_at_once_sends_every_message_once(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    ctx = _context(in_process, calls)
    ids = await _patches(sessions, receiver, 10) + await _patches(sessions, receiver, 3, loc2=True)

    first, second = await asyncio.gather(deliver_to(ctx, receiver.platform_id), deliver_to(ctx, receiver.platform_id))
    assert first.get("delivered", 0) + second.get("delivered", 0) == 13
    assert await deliver_to(ctx, receiver.platform_id) == {}  # and once more: nothing left to do
    assert _bodies(receiver) == [_patch(n) for n in range(10)]
    assert _bodies(receiver, LOC2_PATH) == [_patch(n) for n in range(3)]
    for outbox_id in ids:
        row = await message(quiet_hub.engine, outbox_id)
        assert (row.status, row.attempts, row.locked_until) == (OutboxStatus.DELIVERED, 1, None)
    # One hook call for the batch, one message-log record per call made.
    assert calls.reachable in ([receiver.platform_id], [receiver.platform_id] * 2)
    assert sorted(a.outbox_id for a in calls.attempts) == sorted(ids)


async def test_what_does_not_fit_in_the_run_is_put_back_untouched(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    receiver.peer.set_response("PATCH", LOCATION_PATH, ScriptedResponse(delay=0.2))
    # A run starts calls for 0.3 s: two of the six (one after the other, same object) fit.
    ctx = _context(in_process, calls, dataclasses.replace(FAST_POLICY, batch_time=0.3))
    ids = await _patches(sessions, receiver, 6)

    assert await deliver_to(ctx, receiver.platform_id) == {"delivered": 2}
    for outbox_id in ids[2:]:
        row = await message(quiet_hub.engine, outbox_id)
        # As before the lease: pending, no attempt counted, nobody holds it.
        assert (row.status, row.attempts, row.locked_until) == (OutboxStatus.PENDING, 0, None)
    while len(_bodies(receiver)) < 6:
        assert (await deliver_to(ctx, receiver.platform_id)).get("delivered")
    assert _bodies(receiver) == [_patch(n) for n in range(6)]
    for outbox_id in ids:
        assert (await message(quiet_hub.engine, outbox_id)).attempts == 1


async def test_a_transient_failure_holds_back_its_object_only(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    receiver.peer.set_response("PATCH", LOCATION_PATH, ScriptedResponse(http_status=503, status_code=3000))
    ctx = _context(in_process, calls)
    first, second = await _patches(sessions, receiver, 2)
    other = await push(sessions, receiver, url=receiver.peer.base_url + LOC2_PATH, object_key=LOC2_KEY)

    assert await deliver_to(ctx, receiver.platform_id) == {"delivered": 1, "retry": 1}
    assert (await message(quiet_hub.engine, other)).status == OutboxStatus.DELIVERED
    row = await message(quiet_hub.engine, first)
    assert (row.status, row.attempts, row.last_http_status) == (OutboxStatus.PENDING, 1, 503)
    row = await message(quiet_hub.engine, second)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)  # never sent ahead of the one before it
    assert _bodies(receiver) == [_patch(0)]

    receiver.peer.scripted.clear()
    await asyncio.sleep(0.15)  # FAST_POLICY's backoff after attempt 1
    assert await deliver_to(ctx, receiver.platform_id) == {"delivered": 2}
    assert _bodies(receiver) == [_patch(0), _patch(0), _patch(1)]
    assert calls.unreachable == []


async def test_one_receiver_down_does_not_hold_up_the_others(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess, calls: HookCalls
) -> None:
    down = await connect_peer()
    up = await connect_peer(PeerConfig(roles=[("FR", "EMB", "EMSP", "eMSP B")]), name="eMSP B")
    down.peer.set_response("PATCH", LOCATION_PATH, ScriptedResponse(delay=3.0))  # every call times out
    stuck = await push(sessions, down, method="PATCH", body=_patch(0))
    ids = await _patches(sessions, up, 5)
    started = time.monotonic()
    in_process(policy=DeliveryPolicy(timeout=0.5, lease=1.5, backoff=lambda attempt: 0.1))

    for outbox_id in ids:
        await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)
    assert time.monotonic() - started < 0.5  # before the first call to the other one even timed out
    assert _bodies(up) == [_patch(n) for n in range(5)]

    row = await status_becomes(quiet_hub.engine, stuck, OutboxStatus.FAILED)
    assert row.attempts == 3
    assert row.last_error is not None
    assert "timed out" in row.last_error
    assert calls.unreachable == [down.platform_id]  # OFFLINE in HubClientInfo
    assert calls.reachable == [up.platform_id]


async def test_a_full_put_during_a_batch_waits_behind_it(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    receiver.peer.set_response("PATCH", LOCATION_PATH, ScriptedResponse(delay=0.2))
    ctx = _context(in_process, calls)
    leased = await _patches(sessions, receiver, 2)
    running = asyncio.create_task(deliver_to(ctx, receiver.platform_id))

    async def in_flight() -> bool:
        return len(_bodies(receiver)) == 1

    await eventually(in_flight, what="the batch's first call")
    newest = await push(sessions, receiver, body=b'{"id":"LOC1","v":2}', coalesce=True)
    for outbox_id in leased:  # leased by the batch: coalescing leaves them alone, the PUT waits behind them
        assert (await message(quiet_hub.engine, outbox_id)).status == OutboxStatus.DELIVERING
    assert await running == {"delivered": 3}  # the run's next round took the PUT once it was next in line
    assert (await message(quiet_hub.engine, newest)).status == OutboxStatus.DELIVERED
    assert _bodies(receiver) == [_patch(0), _patch(1), b'{"id":"LOC1","v":2}']


async def test_the_relay_hands_out_one_job_per_receiver(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, redis: Redis
) -> None:
    one = await connect_peer()
    two = await connect_peer(PeerConfig(roles=[("FR", "EMB", "EMSP", "eMSP B")]), name="eMSP B")
    await _patches(sessions, one, 3)
    await _patches(sessions, one, 2, loc2=True)
    await _patches(sessions, two, 2)
    queue = await ArqJobQueue.connect(quiet_hub.settings.redis_url or "")
    relay = OutboxRelay(sessions, queue, SystemClock(), FAST_RELAY)
    try:
        assert await relay.run_once() == 2
        assert await redis.zcard("arq:queue") == 2
        await _patches(sessions, one, 1)  # the receiver's oldest due message is the same: its job is the same
        assert await relay.run_once() == 0
        assert await redis.zcard("arq:queue") == 2
    finally:
        await queue.close()


async def test_a_worker_killed_mid_batch_leaves_the_batch_to_the_next(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    receiver.peer.set_response("PUT", LOCATION_PATH, ScriptedResponse(delay=5.0))
    head = await push(sessions, receiver)
    behind = await _patches(sessions, receiver, 3)
    policy = DeliveryPolicy(timeout=3.0, lease=1.5, backoff=lambda attempt: 0.1)
    options = worker_settings(
        quiet_hub.settings, engine=quiet_hub.engine, policy=policy, hooks=calls.hooks, relay_settings=FAST_RELAY
    )

    async def run_worker() -> tuple[HubWorker, asyncio.Task[None]]:
        worker = HubWorker(**{**options, "handle_signals": False, "poll_delay": 0.05})
        task = asyncio.create_task(worker.async_run())

        async def started() -> bool:
            return "hub.relay" in worker.ctx

        await eventually(started, what="the worker to start")
        return worker, task

    async def stop(worker: HubWorker, task: asyncio.Task[None]) -> None:
        # As on SIGTERM: running jobs are cancelled mid-flight, and the close still completes (HubWorker).
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    first, first_task = await run_worker()
    try:

        async def call_in_flight() -> bool:
            return len(receiver.puts()) == 1

        await eventually(call_in_flight, what="the batch's first call")
    finally:
        await stop(first, first_task)  # the receiver is still thinking: the batch dies with its worker
    for outbox_id in [head, *behind]:
        row = await message(quiet_hub.engine, outbox_id)
        assert (row.status, row.attempts) == (OutboxStatus.DELIVERING, 1)  # the whole batch was leased
    receiver.peer.scripted.clear()

    second, second_task = await run_worker()
    try:
        for outbox_id in [head, *behind]:
            await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED, timeout=10.0)
    finally:
        await stop(second, second_task)
    received = receiver.puts()
    assert [(r.method, r.body) for r in received] == [
        ("PUT", LOCATION_BODY),
        ("PUT", LOCATION_BODY),
        *[("PATCH", _patch(n)) for n in range(3)],
    ]
    # Not before the killed batch's lease (1.5 s from the lease, taken just before the first call) ran out.
    assert (received[1].at - received[0].at).total_seconds() >= 1.4
    assert (await message(quiet_hub.engine, head)).attempts == 2


# ---- the embedded default: SQLite, where the conditional UPDATE is the compare-and-set ----------------------------


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


@pytest.mark.embedded
async def test_batches_on_sqlite_keep_order_and_send_once(sqlite_hub: HubServer) -> None:
    runtime = build_runtime(sqlite_hub.settings, engine=sqlite_hub.engine)
    try:
        _, token_a = await runtime.registry.invite("eMSP A")
        async with PeerPlatform(EMSP) as peer:
            await peer.register(sqlite_hub.versions_url, token_a)
            async with AsyncSession(sqlite_hub.engine) as session:
                platform_id = await session.scalar(
                    select(Platform.id).where(Platform.versions_url == peer.versions_url)
                )
            assert platform_id is not None
            receiver = Receiver(peer, platform_id)
            await sqlite_hub.stop()  # from here on nothing but this test delivers
            async with AsyncSession(sqlite_hub.engine) as session, session.begin():
                # The registration's own HubClientInfo announcements are not what this test looks at.
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.status.in_(OPEN_STATUSES))
                    .values(status=OutboxStatus.SUPERSEDED)
                )
            sessions = create_sessionmaker(sqlite_hub.engine)
            ids = await _patches(sessions, receiver, 8) + await _patches(sessions, receiver, 3, loc2=True)
            ctx = job_context(runtime, policy=dataclasses.replace(FAST_POLICY, batch_size=5), hooks=DeliveryHooks())
            first, second = await asyncio.gather(deliver_to(ctx, platform_id), deliver_to(ctx, platform_id))
            assert first.get("delivered", 0) + second.get("delivered", 0) == 11
            assert _bodies(receiver) == [_patch(n) for n in range(8)]
            assert _bodies(receiver, LOC2_PATH) == [_patch(n) for n in range(3)]
            for outbox_id in ids:
                row = await message(sqlite_hub.engine, outbox_id)
                assert (row.status, row.attempts) == (OutboxStatus.DELIVERED, 1)
    finally:
        await runtime.client.close()


async def test_enqueue_many_writes_a_row_per_receiver_and_coalesces_per_unit(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions
) -> None:
    one = await connect_peer()
    two = await connect_peer(PeerConfig(roles=[("FR", "EMB", "EMSP", "eMSP B")]), name="eMSP B")
    replaced = await push(sessions, one, body=b"old")
    elsewhere = await push(sessions, two, object_key=LOC2_KEY)  # another unit of the second receiver
    async with sessions.begin() as session:
        ids = await outbox.enqueue_many(
            session,
            [
                outbox.Push(
                    one.platform_id, one.location_url, {**routing_headers(), "X-Request-ID": "r"}, LOCATION_KEY
                ),
                outbox.Push(two.platform_id, two.location_url, routing_headers("corr-2"), LOCATION_KEY),
            ],
            kind="broadcast",
            method="put",
            body=b"new",
            coalesce=True,
        )
    assert len(ids) == 2
    first, second = [await message(quiet_hub.engine, outbox_id) for outbox_id in ids]
    assert (first.receiver_platform_id, first.url, first.headers) == (
        one.platform_id,
        one.location_url,
        routing_headers(),
    )
    assert (second.receiver_platform_id, second.headers) == (two.platform_id, routing_headers("corr-2"))
    for row in (first, second):
        assert (row.kind, row.method, row.body, row.status, row.attempts) == (
            "broadcast",
            "PUT",
            b"new",
            OutboxStatus.PENDING,
            0,
        )
    assert (await message(quiet_hub.engine, replaced)).status == OutboxStatus.SUPERSEDED
    assert (await message(quiet_hub.engine, elsewhere)).status == OutboxStatus.PENDING
