"""A finished delivery makes the next push of the same (receiver, object) due at once, not at the next poll."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.outbox import OutboxStatus
from routing.relay import RelaySettings
from tests.routing.conftest import ConnectPeer, StartInProcess, push, status_becomes
from tests.support.hub_server import HubServer

Sessions = async_sessionmaker[AsyncSession]


async def test_a_burst_to_one_object_is_not_paced_by_the_relay_poll(
    quiet_hub: HubServer, connect_peer: ConnectPeer, sessions: Sessions, in_process: StartInProcess
) -> None:
    receiver = await connect_peer()
    ids = [await push(sessions, receiver, method="PATCH", body=b'{"status":"%d"}' % n) for n in range(6)]
    started = time.monotonic()
    # The relay polls only every 10 s: six ordered pushes would take a minute if each waited for a poll.
    in_process(relay=RelaySettings(poll_interval=10.0, redispatch_after=30.0))
    for outbox_id in ids:
        await status_becomes(quiet_hub.engine, outbox_id, OutboxStatus.DELIVERED)
    assert time.monotonic() - started < 5.0
    assert [r.body for r in receiver.puts()] == [b'{"status":"%d"}' % n for n in range(6)]
