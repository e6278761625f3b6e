"""The outbox table's own rules: the caller's transaction, coalescing, re-delivery and the operators' views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing import outbox
from routing.delivery import classify
from routing.outbox import OutboxMessage, OutboxStatus
from tests.peers import PeerConfig
from tests.routing.conftest import LOCATION_BODY, LOCATION_KEY, ConnectPeer, message, push, routing_headers
from tests.support.hub_server import HubServer

Sessions = async_sessionmaker[AsyncSession]


async def _count(sessions: Sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


async def test_enqueue_joins_the_callers_transaction(connect_peer: ConnectPeer, sessions: Sessions) -> None:
    receiver = await connect_peer()
    before = await _count(sessions)
    async with sessions() as session:
        await session.begin()
        await outbox.enqueue(
            session,
            receiver_platform_id=receiver.platform_id,
            kind="fanout",
            method="put",
            url=receiver.location_url,
            body=LOCATION_BODY,
            headers={**routing_headers(), "X-Request-ID": "r1", "authorization": "Token t", "Content-Type": "x"},
            object_key=LOCATION_KEY,
            coalesce=False,
        )
        await session.rollback()  # the business change failed: its pushes vanish with it
    assert await _count(sessions) == before

    outbox_id = await push(sessions, receiver, method="patch", headers={**routing_headers(), "X-Request-ID": "r1"})
    async with sessions() as session:
        row = await session.get(OutboxMessage, outbox_id)
    assert row is not None
    assert (row.status, row.attempts, row.method, row.body) == (OutboxStatus.PENDING, 0, "PATCH", LOCATION_BODY)
    # Only what belongs to the message is kept; ids and credentials are made per attempt.
    assert row.headers == routing_headers()
    assert row.next_attempt_at <= datetime.now(UTC)


async def test_coalescing_leaves_a_message_being_delivered_alone(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions
) -> None:
    receiver = await connect_peer()
    in_flight = await push(sessions, receiver)
    async with sessions.begin() as session:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == in_flight)
            .values(status=OutboxStatus.DELIVERING, attempts=1, locked_until=datetime.now(UTC) + timedelta(minutes=1))
        )
    newer = await push(sessions, receiver, coalesce=True)
    assert (await message(quiet_hub.engine, in_flight)).status == OutboxStatus.DELIVERING
    assert (await message(quiet_hub.engine, newer)).status == OutboxStatus.PENDING


async def test_due_rows_are_open_due_unleased_and_first_in_line(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions
) -> None:
    receiver = await connect_peer()
    first = await push(sessions, receiver)
    second = await push(sessions, receiver, method="PATCH")
    other = await push(sessions, receiver, object_key="locations/NL/CPA/LOC2")
    later = await push(sessions, receiver, object_key="locations/NL/CPA/LOC3")
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id == later).values(next_attempt_at=now + timedelta(hours=1))
        )

    async def due() -> list[int]:
        async with sessions() as session:
            return list(
                await session.scalars(
                    select(OutboxMessage.id).where(outbox.due_condition(now)).order_by(OutboxMessage.id)
                )
            )

    assert await due() == [first, other]
    # A live lease hides the head and still blocks its unit; an expired one makes it due again.
    async with sessions.begin() as session:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == first)
            .values(status=OutboxStatus.DELIVERING, locked_until=now + timedelta(seconds=30))
        )
    assert await due() == [other]
    async with sessions.begin() as session:
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id == first).values(locked_until=now - timedelta(seconds=1))
        )
    assert await due() == [first, other]
    async with sessions.begin() as session:
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id == first).values(status=OutboxStatus.FAILED, locked_until=None)
        )
    assert await due() == [second, other]


async def test_redeliver_and_the_operator_views(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions
) -> None:
    a = await connect_peer()
    b = await connect_peer(PeerConfig(roles=[("FR", "EMB", "EMSP", "eMSP B")]), name="eMSP B")
    failed_a = [await push(sessions, a, object_key=f"locations/NL/CPA/{n}") for n in ("A1", "A2")]
    failed_b = await push(sessions, b, url=b.location_url)
    delivered = await push(sessions, a, object_key="locations/NL/CPA/A3")
    async with sessions.begin() as session:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([*failed_a, failed_b]))
            .values(status=OutboxStatus.FAILED, attempts=3, last_error="connection refused")
        )
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == delivered)
            .values(status=OutboxStatus.DELIVERED, attempts=1, created_at=datetime.now(UTC) - timedelta(days=40))
        )

    async with sessions() as session:
        assert [m.id for m in await outbox.list_messages(session, status=OutboxStatus.FAILED)] == [
            failed_b,
            *reversed(failed_a),
        ]
        # Registering b also queued HubClientInfo pushes for it (a's parties); only this test's pushes count here.
        of_b = await outbox.list_messages(session, platform_id=b.platform_id)
        assert [m.id for m in of_b if m.kind != "clientinfo"] == [failed_b]
        assert {m.receiver_platform_id for m in of_b} == {b.platform_id}
        assert [m.id for m in await outbox.list_messages(session, status="failed", limit=1, offset=1)] == [failed_a[1]]
        counts = await outbox.count_by_status(session, platform_id=a.platform_id)
        assert (counts["failed"], counts["delivered"], counts["pending"]) == (2, 1, 0)
        assert await outbox.get_message(session, failed_b) is not None

    async with sessions.begin() as session:
        assert await outbox.redeliver(session, ids=[failed_a[0]]) == 1
        assert await outbox.redeliver(session, ids=[delivered]) == 0  # only failed messages go back in line
        assert await outbox.redeliver(session, platform_id=b.platform_id) == 1
    row = await message(quiet_hub.engine, failed_a[0])
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)
    assert row.last_error == "connection refused"  # what happened stays visible until the next attempt
    assert (await message(quiet_hub.engine, failed_a[1])).status == OutboxStatus.FAILED

    async with sessions.begin() as session:
        assert await outbox.redeliver(session) == 1  # no filter: every failed message
        assert await outbox.purge(session, before=datetime.now(UTC) - timedelta(days=30)) == 1
    async with sessions() as session:
        assert await outbox.get_message(session, delivered) is None


@pytest.mark.parametrize(
    ("http_status", "body", "kind"),
    [
        (200, b'{"status_code":1000,"timestamp":"2026-11-28T06:00:00Z"}', "delivered"),
        (201, b'{"status_code":1000}', "delivered"),
        (200, b'{"status_code":2001,"status_message":"bad"}', "permanent"),
        (400, b'{"status_code":2000}', "permanent"),
        (200, b'{"status_code":3001}', "permanent"),
        (404, b"Not Found", "permanent"),
        (401, b"", "permanent"),
        (200, b"", "transient"),
        (200, b"OK", "transient"),
        (200, b'{"data":[]}', "transient"),
        (500, b'{"status_code":3000}', "transient"),
        (503, b"Service Unavailable", "transient"),
        (429, b"slow down", "transient"),
        (408, b'{"status_code":2000}', "transient"),
        (200, b'{"status_code":4003}', "transient"),
    ],
)
def test_classify(http_status: int, body: bytes, kind: str) -> None:
    assert classify(http_status, body).kind == kind
