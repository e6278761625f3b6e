"""Building the hub's long-lived objects from settings, shared by the web app, the CLI and the worker."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hub.parties.service import HubIdentity, PartyRegistry
from hub.platform.clock import Clock, SystemClock
from hub.platform.crypto import TokenCipher
from hub.platform.db import create_engine, create_sessionmaker
from hub.platform.http import PartnerClient
from hub.settings import Settings


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    client: PartnerClient
    clock: Clock
    registry: PartyRegistry

    async def close(self) -> None:
        await self.client.close()
        await self.engine.dispose()


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
    registry = PartyRegistry(
        sessions,
        identity=HubIdentity(
            country_code=settings.country_code,
            party_id=settings.party_id,
            name=settings.hub_name,
            versions_url=settings.versions_url,
        ),
        cipher=TokenCipher(settings.secret_key),
        client=client,
        clock=clock,
        partner_timeout=settings.partner_timeout,
        allow_private_peers=settings.allow_private_peers,
    )
    return Runtime(settings, engine, sessions, client, clock, registry)
