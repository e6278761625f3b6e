"""A cluster-wide "something changed" signal over Redis pub/sub (DESIGN §2: Redis carries cache invalidation).

Every hub process keeps the routing table in memory. When one process changes the registry or an agreement it
publishes on the channel; every process (itself included) reloads at once. Losing Redis only loses the speed: the
routing table's own fingerprint poll still catches every change within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from redis.asyncio import Redis

log = structlog.get_logger("hub.signals")


class RedisSignal:
    def __init__(self, redis_url: str, channel: str) -> None:
        self._redis: Redis = Redis.from_url(redis_url)
        self.channel = channel

    async def publish(self) -> None:
        try:
            await self._redis.publish(self.channel, b"1")
        except Exception as exc:  # the poll still catches the change; do not fail the operator's action
            log.warning("could not publish a change signal", channel=self.channel, error=str(exc))

    async def listen(self, callback: Callable[[], Awaitable[None]], *, reconnect_after: float = 1.0) -> None:
        """Await ``callback`` for every signal, until cancelled; resubscribes after Redis restarts."""
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None:
                        await callback()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("change signal subscription lost; resubscribing", error=str(exc))
                await asyncio.sleep(reconnect_after)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._redis.aclose()
