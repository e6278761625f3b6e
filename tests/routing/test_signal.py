"""Several hub instances: a credentials change made through one reaches the others' routing tables at once (Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.peers import PeerPlatform
from tests.support.hub_server import HubServer

HubFactory = Callable[..., Awaitable[HubServer]]


async def _versions_status(peer: PeerPlatform, hub: HubServer, token: str | None) -> int:
    return (await peer.request("GET", f"{hub.url}/ocpi/2.2.1/sender/locations", token=token)).status


async def test_rotation_through_one_instance_is_seen_by_another_at_once(
    hub_factory: HubFactory, redis_url: str, invite_on: Callable[..., Awaitable[str]]
) -> None:
    # Both instances poll for changes only once a minute: only the Redis signal can make the second one notice.
    first = await hub_factory(redis_url=redis_url, routing_poll=60.0)
    second = await hub_factory(redis_url=redis_url, routing_poll=60.0)
    async with PeerPlatform() as peer:
        await peer.register(first.versions_url, await invite_on(first))
        old = peer.token_c
        assert await _versions_status(peer, second, old) == 200  # the second instance has the platform loaded
        await peer.update_credentials()  # rotation through the first instance
        status = 200
        for _ in range(50):
            status = await _versions_status(peer, second, old)
            if status == 401:
                break
            await asyncio.sleep(0.02)
        assert status == 401, "the second instance still accepts the rotated-away token"
        assert await _versions_status(peer, second, peer.token_c) == 200


async def test_without_the_signal_the_poll_catches_up(
    hub_factory: HubFactory, invite_on: Callable[..., Awaitable[str]]
) -> None:
    first = await hub_factory(routing_poll=60.0)
    second = await hub_factory(routing_poll=0.2)
    async with PeerPlatform() as peer:
        await peer.register(first.versions_url, await invite_on(first))
        old = peer.token_c
        assert await _versions_status(peer, second, old) == 200
        await peer.update_credentials()
        await asyncio.sleep(0.6)
        assert await _versions_status(peer, second, old) == 401
