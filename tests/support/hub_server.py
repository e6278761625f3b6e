"""Serving the real hub app on a loopback port inside the test's event loop (uvicorn on a pre-bound socket)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import msgspec
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app, wrap
from hub.platform.clock import Clock
from hub.settings import Settings

ADMIN_TOKEN = "test-admin-token"


@dataclass
class HubServer:
    settings: Settings
    engine: AsyncEngine
    clock: Clock | None = None
    _server: uvicorn.Server | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _sock: socket.socket | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def versions_url(self) -> str:
        return self.settings.versions_url

    @classmethod
    def bind(cls, base: Settings, engine: AsyncEngine, clock: Clock | None = None) -> HubServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        settings = msgspec.structs.replace(base, public_url=f"http://127.0.0.1:{port}")
        server = cls(settings=settings, engine=engine, clock=clock)
        server._sock = sock
        return server

    async def start(self, *, lifespan: bool = True) -> None:
        app = wrap(create_app(self.settings, engine=self.engine, clock=self.clock))
        config = uvicorn.Config(app, lifespan="on" if lifespan else "off", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        assert self._sock is not None
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        if self._sock is not None:
            self._sock.close()
