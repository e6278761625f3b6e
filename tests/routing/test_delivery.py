"""Outbox delivery through the relay and the in-process queue (the embedded default's shape), to real peers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.parties.models import Platform
from hub.platform.db import create_sessionmaker
from hub.platform.jobs import InProcessJobQueue
from hub.worker import job_context, job_registry
from routing import outbox
from routing.delivery import DELIVER_JOB, DeliveryPolicy, deliver, deliver_job_id
from routing.outbox import OutboxMessage, OutboxStatus
from routing.relay import RelaySettings
from tests.peers import PeerConfig, PeerPlatform, ScriptedResponse, encode_authorization
from tests.routing.conftest import (
    EMSP,
    FAST_POLICY,
    LOCATION_BODY,
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


@pytest.mark.parametrize("form", ["base64", "raw"])
async def test_a_push_reaches_the_receiver_byte_for_byte(
    *,
    quiet_hub: HubServer,
    connect_peer: ConnectPeer,
    sessions: Sessions,
    in_process: StartInProcess,
    calls: HookCalls,
    form: str,
) -> None:
    receiver = await connect_peer(PeerConfig(roles=EMSP.roles, token_form=form))  # type: ignore[arg-type]
    # A stale request id or token in the stored headers must not leak into the call (new id per hop, DESIGN §5).
    headers = routing_headers("corr-42") | {"X-Request-ID": "stale-id", "Authorization": "Token stale"}
    outbox_id = await push(sessions, receiver, headers=headers)
    in_process()

    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)
    (received,) = receiver.puts()
    assert (received.method, received.path, received.body) == ("PUT", LOCATION_PATH, LOCATION_BODY)
    assert received.header("content-type") == "application/json"
    assert received.header("x-correlation-id") == "corr-42"
    request_id = received.header("x-request-id")
    assert request_id not in (None, "", "stale-id", "corr-42")
    # Fan-out leg of a broadcast: FROM = hub, TO = the receiver (hub notes §1.9).
    assert [received.header(f"ocpi-{name}") for name in ("from-country-code", "from-party-id")] == ["NL", "HUB"]
    assert [received.header(f"ocpi-{name}") for name in ("to-country-code", "to-party-id")] == ["DE", "EMA"]
    # The peer's token, in the form the peer uses itself (DESIGN §7).
    assert receiver.peer.token_b is not None
    assert received.header("authorization") == encode_authorization(receiver.peer.token_b, form)  # type: ignore[arg-type]
    assert received.token_form == form

    assert row.attempts == 1
    assert row.last_http_status == 201  # the peer created the object
    assert row.last_error is None
    assert row.delivered_at is not None
    assert row.locked_until is None
    assert calls.reachable == [receiver.platform_id]
    assert calls.unreachable == []
    # What the message log gets for this call (DESIGN §5).
    (attempt,) = calls.attempts
    assert (attempt.outbox_id, attempt.kind, attempt.attempt, attempt.outcome) == (outbox_id, "fanout", 1, "delivered")
    assert (attempt.method, attempt.url, attempt.request_id) == ("PUT", receiver.location_url, request_id)
    assert (attempt.http_status, attempt.ocpi_status, attempt.error) == (201, 1000, None)
    assert attempt.headers["X-Correlation-ID"] == "corr-42"
    assert attempt.size_out == len(LOCATION_BODY)
    assert attempt.size_in > 0
    assert attempt.latency_ms > 0


async def test_a_commit_wakes_the_relay_at_once(
    quiet_hub: HubServer, connect_peer: ConnectPeer, in_process: StartInProcess
) -> None:
    receiver = await connect_peer()
    # The relay would next poll in a minute: only the after-commit wake-up can make this fast.
    started = in_process(relay=RelaySettings(poll_interval=60.0))
    await asyncio.sleep(0.2)  # its first pass is over
    outbox_id = await push(started.runtime.sessions, receiver)
    await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED, timeout=3.0)


async def test_order_is_kept_per_receiver_and_object(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess
) -> None:
    receiver = await connect_peer()
    # The first push of LOC1 is slow to answer: later pushes of LOC1 must wait for it, LOC2 must not.
    receiver.peer.set_response("PUT", LOCATION_PATH, ScriptedResponse(delay=0.4))
    loc2_path = LOCATION_PATH.replace("LOC1", "LOC2")
    ids = [
        await push(sessions, receiver),
        await push(sessions, receiver, method="PATCH", body=b'{"name":"one"}'),
        await push(sessions, receiver, method="PATCH", body=b'{"name":"two"}'),
        await push(sessions, receiver, url=receiver.peer.base_url + loc2_path, object_key="locations/NL/CPA/LOC2"),
    ]
    in_process()
    for outbox_id in ids:
        await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)

    loc1 = receiver.puts()
    assert [(r.method, r.body) for r in loc1] == [
        ("PUT", LOCATION_BODY),
        ("PATCH", b'{"name":"one"}'),
        ("PATCH", b'{"name":"two"}'),
    ]
    # Each waited for the answer to the one before it.
    assert (loc1[1].at - loc1[0].at).total_seconds() >= 0.4
    assert loc1[2].at >= loc1[1].at
    (loc2,) = receiver.puts(loc2_path)
    assert loc2.at < loc1[1].at  # another object of the same receiver is not held up


async def test_a_full_put_supersedes_what_was_not_sent(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess
) -> None:
    receiver = await connect_peer()
    other = await connect_peer(PeerConfig(roles=[("FR", "EMB", "EMSP", "eMSP B")]), name="eMSP B")
    gave_up = await push(sessions, receiver)
    async with sessions.begin() as session:
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id == gave_up).values(status=OutboxStatus.FAILED, attempts=3)
        )
    patch = await push(sessions, receiver, method="PATCH", body=b'{"name":"old"}')
    elsewhere = await push(sessions, other, url=other.location_url)
    another_object = await push(
        sessions,
        receiver,
        url=receiver.peer.base_url + LOCATION_PATH.replace("LOC1", "LOC2"),
        object_key="locations/NL/CPA/LOC2",
    )
    first_put = await push(sessions, receiver, body=b'{"id":"LOC1","v":1}', coalesce=True)
    newest_put = await push(sessions, receiver, body=b'{"id":"LOC1","v":2}', coalesce=True)

    statuses = {i: (await message(quiet_hub.engine, i)).status for i in (gave_up, patch, first_put, newest_put)}
    assert statuses == {
        gave_up: OutboxStatus.SUPERSEDED,  # a re-delivery of it would roll the receiver back
        patch: OutboxStatus.SUPERSEDED,
        first_put: OutboxStatus.SUPERSEDED,
        newest_put: OutboxStatus.PENDING,
    }
    for untouched in (elsewhere, another_object):
        assert (await message(quiet_hub.engine, untouched)).status == OutboxStatus.PENDING

    in_process()
    for delivered in (newest_put, elsewhere, another_object):
        await status_becomes(quiet_hub.engine, delivered, OutboxStatus.DELIVERED)
    assert [r.body for r in receiver.puts()] == [b'{"id":"LOC1","v":2}']
    assert len(other.puts()) == 1


async def test_a_job_run_twice_delivers_once(
    quiet_hub: HubServer,
    connect_peer: ConnectPeer,
    sessions: Sessions,
    in_process: StartInProcess,
    calls: HookCalls,
) -> None:
    receiver = await connect_peer()
    runtime = in_process(run=False).runtime  # no relay: this test runs the job by hand
    ctx = job_context(runtime, policy=FAST_POLICY, hooks=calls.hooks)
    outbox_id = await push(sessions, receiver)

    assert sorted(await asyncio.gather(deliver(ctx, outbox_id), deliver(ctx, outbox_id))) == ["delivered", "skipped"]
    assert await deliver(ctx, outbox_id) == "skipped"
    assert len(receiver.puts()) == 1
    assert (await message(quiet_hub.engine, outbox_id)).attempts == 1

    # The in-process queue collapses a job id that is still queued or running, and forgets it once it finished.
    receiver.peer.set_response("PUT", LOCATION_PATH, ScriptedResponse(delay=0.3))
    again = await push(sessions, receiver, coalesce=True)
    queue = InProcessJobQueue(job_registry(FAST_POLICY), ctx)
    try:
        assert await queue.enqueue(DELIVER_JOB, again, job_id=deliver_job_id(again, 0))
        assert not await queue.enqueue(DELIVER_JOB, again, job_id=deliver_job_id(again, 0))
        await status_becomes(quiet_hub.engine, again, OutboxStatus.DELIVERED)
        await eventually(lambda: _idle(queue), what="the queue to finish")
        assert await queue.enqueue(DELIVER_JOB, again, job_id=deliver_job_id(again, 0))  # runs, finds it delivered
        await eventually(lambda: _idle(queue), what="the queue to finish")
    finally:
        await queue.close()
    assert len(receiver.puts()) == 2


async def _idle(queue: InProcessJobQueue) -> bool:
    return queue.running == 0


async def test_a_receiver_answering_503_is_retried_until_it_recovers(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    receiver.peer.fail_all = 503
    outbox_id = await push(sessions, receiver)
    in_process(policy=DeliveryPolicy(timeout=1.0, lease=2.0, backoff=lambda attempt: 0.5))

    async def first_attempt_seen() -> bool:
        return len(receiver.puts()) == 1

    await eventually(first_attempt_seen, what="the first attempt")
    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.PENDING)
    assert (row.attempts, row.last_http_status) == (1, 503)
    receiver.peer.fail_all = None

    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)
    assert row.attempts == 2
    first, second = receiver.puts()
    assert first.header("x-request-id") != second.header("x-request-id")
    assert calls.unreachable == []
    assert calls.reachable == [receiver.platform_id]


async def test_a_receiver_down_for_good_fails_once_then_is_redelivered(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    port = urlparse(receiver.peer.base_url).port
    await receiver.peer.stop()  # connection refused from now on
    outbox_id = await push(sessions, receiver)
    started = in_process()

    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.FAILED)
    assert row.attempts == 3
    assert row.last_http_status is None
    assert row.last_error is not None
    assert "failed" in row.last_error
    assert calls.unreachable == [receiver.platform_id]
    await asyncio.sleep(0.5)  # nothing retries a failed push by itself (hub notes §3: no queueing)
    assert (await message(quiet_hub.engine, outbox_id)).attempts == 3
    assert calls.unreachable == [receiver.platform_id]
    assert calls.reachable == []

    await receiver.peer.start(port=port or 0)
    async with started.runtime.sessions.begin() as session:
        assert await outbox.redeliver(session, platform_id=receiver.platform_id) == 1
    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)
    assert row.attempts == 1
    assert len(receiver.puts()) == 1
    assert calls.reachable == [receiver.platform_id]
    assert calls.unreachable == [receiver.platform_id]


async def test_an_ocpi_2001_answer_fails_at_once(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    receiver.peer.set_response("PUT", LOCATION_PATH, ScriptedResponse(status_code=2001, message="evses missing"))
    outbox_id = await push(sessions, receiver)
    in_process()

    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.FAILED)
    assert row.attempts == 1
    assert row.last_http_status == 200
    assert row.last_error == "HTTP 200, OCPI 2001: evses missing"
    await asyncio.sleep(0.4)
    assert len(receiver.puts()) == 1  # the receiver refused the content: no retry
    assert calls.unreachable == []  # and it is reachable, it just said no


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (ScriptedResponse(raw_body=b"<html>maintenance</html>"), "HTTP 200 without an OCPI envelope"),
        (ScriptedResponse(http_status=502, raw_body=b"bad gateway"), "HTTP 502 without an OCPI envelope"),
        (ScriptedResponse(http_status=503, status_code=3000, message="down"), "HTTP 503, OCPI 3000: down"),
        (ScriptedResponse(delay=0.6), "timed out"),
    ],
    ids=["not-json", "502", "503-with-envelope", "timeout"],
)
async def test_transient_answers_are_retried_then_given_up(
    *,
    quiet_hub: HubServer,
    connect_peer: ConnectPeer,
    sessions: Sessions,
    in_process: StartInProcess,
    calls: HookCalls,
    answer: ScriptedResponse,
    error: str,
) -> None:
    receiver = await connect_peer()
    receiver.peer.set_response("PUT", LOCATION_PATH, answer)
    outbox_id = await push(sessions, receiver)
    in_process(policy=DeliveryPolicy(timeout=0.3, lease=1.0, backoff=lambda attempt: 0.05))

    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.FAILED)
    assert row.attempts == 3
    assert row.last_error is not None
    assert error in row.last_error
    assert len(receiver.puts()) == 3
    assert calls.unreachable == [receiver.platform_id]


async def test_the_token_at_send_time_is_used(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess
) -> None:
    receiver = await connect_peer()
    outbox_id = await push(sessions, receiver)
    old_token = receiver.peer.token_b
    await receiver.peer.update_credentials()  # rotation (credentials §PUT) between enqueue and delivery
    assert receiver.peer.token_b not in (None, old_token)
    in_process()

    await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)
    (received,) = receiver.puts()
    assert received.header("authorization") == encode_authorization(receiver.peer.token_b or "", "base64")


async def test_a_receiver_that_unregistered_gets_nothing(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess, calls: HookCalls
) -> None:
    receiver = await connect_peer()
    outbox_id = await push(sessions, receiver)
    await receiver.peer.unregister()  # DELETE credentials: the hub has no token for it any more
    in_process()

    row = await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.FAILED)
    assert row.last_error == "receiver platform is not registered"
    assert receiver.puts() == []
    assert calls.unreachable == []


async def test_the_hubs_own_web_process_runs_the_relay_without_redis(
    hub: HubServer, invite: Callable[..., Awaitable[str]]
) -> None:
    # No HUB_REDIS_URL: the app's lifespan runs the relay and the jobs in-process (DESIGN §2), default timings.
    async with PeerPlatform(EMSP) as peer:
        await peer.register(hub.versions_url, await invite("eMSP A"))
        async with AsyncSession(hub.engine) as session:
            platform_id = await session.scalar(select(Platform.id).where(Platform.versions_url == peer.versions_url))
        assert platform_id is not None
        outbox_id = await push(create_sessionmaker(hub.engine), Receiver(peer, platform_id))
        await status_becomes(hub.engine, outbox_id, OutboxStatus.DELIVERED)
        assert [r.body for r in peer.find_received(path=LOCATION_PATH)] == [LOCATION_BODY]
