"""A small roaming world for the end-to-end routing scenarios: the real hub and four real partner platforms.

The hub runs on PostgreSQL without Redis, so its own process runs the outbox relay and the deliveries (broadcast
fan-out, HubClientInfo pushes) exactly as a single-instance deployment does. Every partner registers through the
real credentials handshake. The fixtures live in ``tests/routing/scenarios_conftest.py``; test modules load them
with ``pytest_plugins = ("tests.routing.scenarios_conftest",)`` and import the helpers from here.

Parties (country/party, role):
- ``cpo_a``: NL/CPA (CPO), a single-party platform;
- ``cpo_b``: BE/CPB and BE/CPC (both CPO), a multi-party platform;
- ``emsp_a``: DE/EMA (eMSP); ``emsp_b``: FR/EMB (eMSP, sends its token raw, not Base64). Both also offer a
  Charging Profiles SENDER interface.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

import msgspec
from litestar import Litestar
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.agreements.models import RoamingAgreement
from hub.parties.models import Platform
from hub.platform.db import create_sessionmaker
from hub.platform.web import OcpiAsgiWrapper
from hub.runtime import Runtime
from routing import messagelog
from routing.outbox import OPEN_STATUSES, OutboxMessage
from tests.conftest import InviteOn
from tests.peers import (
    RECEIVER,
    SENDER,
    PeerConfig,
    PeerPlatform,
    PeerResponse,
    Received,
    TokenForm,
    default_modules,
)
from tests.support.hub_server import HubServer

T = TypeVar("T")
PartyKey = tuple[str, str]

HUB: PartyKey = ("NL", "HUB")
CPA: PartyKey = ("NL", "CPA")
CPB: PartyKey = ("BE", "CPB")
CPC: PartyKey = ("BE", "CPC")
EMA: PartyKey = ("DE", "EMA")
EMB: PartyKey = ("FR", "EMB")
ALL_PARTIES = (CPA, CPB, CPC, EMA, EMB)

# Small enough to keep the scenarios fast, large enough for a loopback partner that answers at once.
FORWARD_TIMEOUT = 1.5
AUTHORIZE_TIMEOUT = 0.5


def _emsp(country_code: str, party_id: str, name: str, token_form: TokenForm = "base64") -> PeerConfig:
    roles = [(country_code, party_id, "EMSP", name)]
    # mod_charging_profiles: the Sender interface (ActiveChargingProfile pushes) is "typically SCSP", an eMSP may
    # offer it too; these two do, so the hub has somewhere to route a CPO's ActiveChargingProfile PUT.
    modules = [*default_modules(roles), ("chargingprofiles", SENDER)]
    return PeerConfig(roles=roles, modules=modules, token_form=token_form)


CPO_A_CONFIG = PeerConfig(roles=[("NL", "CPA", "CPO", "CPO A")])
CPO_B_CONFIG = PeerConfig(roles=[("BE", "CPB", "CPO", "CPO B"), ("BE", "CPC", "CPO", "CPO C")])
EMSP_A_CONFIG = _emsp("DE", "EMA", "eMSP A")
# eMSP B sends its token raw, as many 2.1.1/2.2 platforms still do: the hub must call it back the same way.
EMSP_B_CONFIG = _emsp("FR", "EMB", "eMSP B", token_form="raw")


def routed(frm: PartyKey | None = None, to: PartyKey | None = None, **extra: str) -> dict[str, str]:
    """Routing headers (transport §Message Routing headers) plus any extra header."""
    headers: dict[str, str] = {}
    if frm is not None:
        headers["OCPI-from-country-code"], headers["OCPI-from-party-id"] = frm
    if to is not None:
        headers["OCPI-to-country-code"], headers["OCPI-to-party-id"] = to
    headers.update(extra)
    return headers


def path_of(url: str) -> str:
    """The path (and query) of an absolute URL."""
    return "/" + url.split("/", 3)[3]


def json_of(raw: bytes) -> Any:
    return msgspec.json.decode(raw)


@overload
async def until(check: Callable[[], Awaitable[T]], *, timeout: float = ..., what: str = ...) -> T: ...
@overload
async def until(check: Callable[[], T], *, timeout: float = ..., what: str = ...) -> T: ...
async def until(check: Callable[[], Any], *, timeout: float = 8.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; return that. Short sleeps, one deadline."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        value = await outcome if inspect.isawaitable(outcome) else outcome
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def runtime_of(hub: HubServer) -> Runtime:
    """The hub process's own runtime (routing table, HubClientInfo service), reached through the served app."""
    server = hub._server
    assert server is not None, "hub not started"
    wrapper = server.config.app
    assert isinstance(wrapper, OcpiAsgiWrapper)
    app = wrapper.app
    assert isinstance(app, Litestar)
    runtime = app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


@dataclass
class World:
    hub: HubServer
    cpo_a: PeerPlatform
    cpo_b: PeerPlatform
    emsp_a: PeerPlatform
    emsp_b: PeerPlatform
    platform_ids: dict[str, int] = field(default_factory=dict)  # peer versions URL -> hub platform id
    ports: dict[str, int] = field(default_factory=dict)  # peer versions URL -> port

    @property
    def peers(self) -> tuple[PeerPlatform, ...]:
        return (self.cpo_a, self.cpo_b, self.emsp_a, self.emsp_b)

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.hub)

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return create_sessionmaker(self.hub.engine)

    def platform_id(self, peer: PeerPlatform) -> int:
        return self.platform_ids[peer.versions_url]

    def hub_url(self, interface: str, module: str, tail: str = "") -> str:
        """One of the hub's functional-module URLs as advertised, with an optional tail (and query)."""
        base = f"{self.hub.url}/ocpi/2.2.1/{interface.lower()}/{module}/"
        return base + tail.lstrip("/")

    async def call(
        self,
        peer: PeerPlatform,
        method: str,
        interface: str,
        module: str,
        tail: str = "",
        *,
        frm: PartyKey | None = None,
        to: PartyKey | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        omit: tuple[str, ...] = (),
    ) -> PeerResponse:
        """``peer`` calls the hub's ``interface`` URL of ``module`` with routing headers."""
        return await peer.request(
            method,
            self.hub_url(interface, module, tail),
            body=body,
            headers={**routed(frm, to), **(headers or {})},
            omit=omit,
        )

    async def settle(self) -> None:
        """Wait until the hub has nothing left to deliver (fan-out, HubClientInfo)."""

        async def idle() -> bool:
            async with self.sessions() as session:
                count = await session.scalar(
                    select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status.in_(OPEN_STATUSES))
                )
            return count == 0

        await until(idle, what="the hub's outbox to drain")

    async def stop(self, peer: PeerPlatform) -> None:
        """Take a partner down (its port refuses connections until `restart`)."""
        self.ports[peer.versions_url] = int(peer.base_url.rsplit(":", 1)[1])
        await peer.stop()

    async def restart(self, peer: PeerPlatform) -> None:
        """Bring a partner back on the port the hub knows."""
        port = self.ports[peer.versions_url]
        await until(lambda: _can_bind(port), timeout=3.0, what=f"port {port} to be free again")
        await peer.start(port=port)

    async def add_agreement(self, cpo: PartyKey, emsp: PartyKey) -> None:
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            session.add(
                RoamingAgreement(
                    cpo_country_code=cpo[0],
                    cpo_party_id=cpo[1],
                    emsp_country_code=emsp[0],
                    emsp_party_id=emsp[1],
                    active=True,
                    created_at=now,
                    updated_at=now,
                )
            )

    async def log_of(self, correlation_id: str, *, at_least: int) -> list[messagelog.MessageLogRow]:
        """The message log rows of one correlation id, once the batch writer wrote at least ``at_least``."""

        async def rows() -> list[messagelog.MessageLogRow]:
            async with self.sessions() as session:
                found = await messagelog.search(session, correlation_id=correlation_id)
            return found if len(found) >= at_least else []

        return await until(rows, what=f"{at_least} message log rows for {correlation_id}")


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pushes(peer: PeerPlatform, module: str, *, method: str | None = None) -> list[Received]:
    """What ``peer`` received on a functional module (HubClientInfo PUTs and still-alive GETs left out)."""
    return [r for r in peer.received if r.module == module and (method is None or r.method == method)]


def client_info(peer: PeerPlatform, party: PartyKey) -> str | None:
    """The status the hub last told ``peer`` about ``party``."""
    info = peer.client_infos.get(party)
    return None if info is None else str(info["status"])


async def told(peers: Iterable[PeerPlatform], party: PartyKey, status: str) -> None:
    """Wait until the hub has told each of ``peers`` (HubClientInfo) that ``party`` is ``status``."""
    for peer in peers:
        await _told(peer, party, status)


async def _told(peer: PeerPlatform, party: PartyKey, status: str) -> None:
    name = peer.config.roles[0][3]
    await until(lambda: client_info(peer, party) == status, what=f"{name} to be told {party} is {status}")


async def _knows_everyone(peer: PeerPlatform) -> None:
    own = {(cc, pid) for cc, pid, _, _ in peer.config.roles}
    others = [party for party in ALL_PARTIES if party not in own]
    await until(
        lambda: all(client_info(peer, p) is not None for p in others),
        what=f"{peer.config.roles[0][3]} to learn every other party",
    )


MakeWorld = Callable[..., Awaitable[World]]
CONFIGS = (CPO_A_CONFIG, CPO_B_CONFIG, EMSP_A_CONFIG, EMSP_B_CONFIG)


async def build_world(hub: HubServer, invite_on: InviteOn, started: list[PeerPlatform]) -> World:
    """Register the four partner platforms with ``hub`` (real handshakes) and wait until everyone knows everyone."""
    peers = []
    for config in CONFIGS:
        peer = await PeerPlatform(config).start()
        started.append(peer)
        await peer.register(hub.versions_url, await invite_on(hub, config.roles[0][3]))
        peers.append(peer)
    cpo_a, cpo_b, emsp_a, emsp_b = peers
    world = World(hub, cpo_a, cpo_b, emsp_a, emsp_b)
    async with world.sessions() as session:
        rows = (await session.execute(select(Platform.versions_url, Platform.id))).all()
    world.platform_ids = {url: platform_id for url, platform_id in rows if url}
    # Everyone learns about everyone (HubClientInfo) before a scenario starts; then the slate is clean.
    for peer in world.peers:
        await _knows_everyone(peer)
    await world.settle()
    for peer in world.peers:
        peer.received.clear()
    return world


__all__ = [
    "ALL_PARTIES",
    "AUTHORIZE_TIMEOUT",
    "CPA",
    "CPB",
    "CPC",
    "EMA",
    "EMB",
    "FORWARD_TIMEOUT",
    "HUB",
    "RECEIVER",
    "SENDER",
    "MakeWorld",
    "World",
    "build_world",
    "client_info",
    "json_of",
    "path_of",
    "pushes",
    "routed",
    "runtime_of",
    "told",
    "until",
]
