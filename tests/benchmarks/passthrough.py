"""The stack's own ceiling: a bare ASGI pass-through on the hub's server and outbound client (DESIGN §11).

No authentication, routing, logging or storage: the request's method, path and body go to ``BENCH_UPSTREAM`` with
the hub's HTTP/1.1 client and the answer comes back as it is. make bench serves it the way the hub is served
(granian, uvloop, two workers) so the hub's figures can be read against what Python on this server and client
costs before the hub does anything.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hub.platform.http1 import Http1Client

Message = MutableMapping[str, Any]


class PassThrough:
    def __init__(self) -> None:
        self._upstream = os.environ["BENCH_UPSTREAM"].rstrip("/")
        self._client: Http1Client | None = None

    async def __call__(
        self, scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if self._client is None:
            self._client = Http1Client()
        body = b""
        if scope["method"] != "GET":
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
        answer = await self._client.request(
            scope["method"],
            self._upstream + scope["path"],
            headers={"Content-Type": "application/json"},
            body=body or None,
            timeout=10.0,
        )
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})


def app() -> PassThrough:
    """The factory granian serves (``tests.benchmarks.passthrough:app``)."""
    return PassThrough()
