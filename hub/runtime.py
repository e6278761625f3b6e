"""Building the hub's long-lived objects from settings, shared by the web app, the CLI and the worker.

A composition root: it wires the registry to the routing table and to HubClientInfo (the registry itself knows
nothing of routing), so a registration made from any process reloads routing and announces the new parties.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub.parties.service import HubIdentity, PartyRegistry
from hub.platform.clock import Clock, SystemClock
from hub.platform.crypto import TokenCipher
from hub.platform.db import create_engine, create_sessionmaker
from hub.platform.http import PartnerClient
from hub.platform.signals import RedisSignal
from hub.settings import Settings
from routing.clientinfo import ClientInfoService
from routing.messagelog import MessageLog
from routing.table import RoutingTable

ROUTING_CHANNEL = "ocpi-hub:routing-changed"


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    client: PartnerClient
    clock: Clock
    cipher: TokenCipher
    registry: PartyRegistry
    table: RoutingTable
    message_log: MessageLog
    clientinfo: ClientInfoService
    # With Redis: tells every hub process to reload its routing table now (without it, the 2-second poll does).
    routing_signal: RedisSignal | None = None

    async def close(self) -> None:
        if self.routing_signal is not None:
            await self.routing_signal.close()
        await self.client.close()
        await self.engine.dispose()

    async def agreements_changed(self, *parties: tuple[str, str]) -> None:
        """Reload routing and re-announce the parties whose visibility changed (PLANNED ↔ their real status)."""
        snapshot = await self.table.reload()
        if self.routing_signal is not None:
            await self.routing_signal.publish()
        platform_ids = {pid for party in parties if (pid := snapshot.by_party.get(party)) is not None}
        for platform_id in sorted(platform_ids):
            await self.clientinfo.platform_changed(platform_id)


def build_runtime(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    client: PartnerClient | None = None,
    clock: Clock | None = None,
) -> Runtime:
    engine = engine or create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    client = client or PartnerClient(default_timeout=settings.partner_timeout)
    clock = clock or SystemClock()
    cipher = TokenCipher(settings.secret_key)
    registry = PartyRegistry(
        sessions,
        identity=HubIdentity(
            country_code=settings.country_code,
            party_id=settings.party_id,
            name=settings.hub_name,
            versions_url=settings.versions_url,
        ),
        cipher=cipher,
        client=client,
        clock=clock,
        partner_timeout=settings.partner_timeout,
        allow_private_peers=settings.allow_private_peers,
    )
    table = RoutingTable(sessions, cipher, clock, policy=settings.roaming_policy, poll_interval=settings.routing_poll)
    message_log = MessageLog(sessions)
    clientinfo = ClientInfoService(
        sessions,
        table=table,
        cipher=cipher,
        client=client,
        clock=clock,
        liveness_after=settings.liveness_after,
        probe_timeout=settings.partner_timeout,
    )

    routing_signal = RedisSignal(settings.redis_url, ROUTING_CHANNEL) if settings.redis_url else None

    async def reload_table(_platform_id: int) -> None:
        await table.reload()
        if routing_signal is not None:
            await routing_signal.publish()

    # Order matters: the table first, so HubClientInfo sees the new party's roaming permissions.
    registry.on_change(reload_table)
    registry.on_change(clientinfo.platform_changed)
    return Runtime(
        settings, engine, sessions, client, clock, cipher, registry, table, message_log, clientinfo, routing_signal
    )
