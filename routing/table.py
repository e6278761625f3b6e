"""The in-memory routing table: token → caller, party → platform, platform → endpoints and token (DESIGN §5, §12).

Every routed request needs these lookups, so they come from memory, never from the database. The table is an
immutable snapshot; a reload builds a new one and swaps the reference, so readers never lock. Reloads happen when
this process changes the registry, when another process announces a change (Redis pub/sub), when a periodic
fingerprint check sees a change (the fallback that needs no Redis), and when a token is unknown to the snapshot
but known to the database (a platform that registered through another process a moment ago).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from hub.agreements.models import RoamingAgreement
from hub.ocpi.headers import parse_authorization
from hub.parties.models import Platform, RegistrationStatus
from hub.platform.clock import Clock
from hub.platform.crypto import TokenCipher, hash_token

log = structlog.get_logger("routing.table")

PartyKey = tuple[str, str]  # (COUNTRY_CODE, PARTY_ID), upper-cased
RoleKey = tuple[str, str, str]  # (COUNTRY_CODE, PARTY_ID, ROLE)

# Roles whose data flows to each other (hub notes §1.9 item 2): CPO data goes to eMSP-like parties, theirs to CPOs.
CPO_ROLES = frozenset({"CPO"})
EMSP_LIKE_ROLES = frozenset({"EMSP", "NSP", "NAP", "OTHER", "SCSP"})


@dataclass(frozen=True, slots=True)
class PlatformRoute:
    platform_id: int
    name: str
    status: str
    connection_status: str
    token: str | None  # the hub's token for calling this platform, decrypted once per reload
    token_form: str
    endpoints: dict[tuple[str, str], str]  # (module, SENDER|RECEIVER) → URL without trailing slash
    parties: frozenset[RoleKey]

    def endpoint(self, module: str, role: str) -> str | None:
        return self.endpoints.get((module, role))

    @property
    def party_keys(self) -> frozenset[PartyKey]:
        return frozenset((cc, pid) for cc, pid, _ in self.parties)


@dataclass(frozen=True, slots=True)
class Caller:
    platform: PlatformRoute
    token: str
    token_form: str


@dataclass(frozen=True, slots=True)
class RoutingSnapshot:
    platforms: dict[int, PlatformRoute] = field(default_factory=dict)
    by_token_hash: dict[str, int] = field(default_factory=dict)
    by_party: dict[PartyKey, int] = field(default_factory=dict)
    roles_of_party: dict[PartyKey, frozenset[str]] = field(default_factory=dict)
    # None: open policy. Otherwise the (CPO party, eMSP party) pairs with an agreement in force.
    agreements: frozenset[tuple[PartyKey, PartyKey]] | None = None
    fingerprint: tuple[object, ...] = ()

    def platform_of(self, party: PartyKey) -> PlatformRoute | None:
        platform_id = self.by_party.get(party)
        return None if platform_id is None else self.platforms.get(platform_id)

    def permitted(self, a: PartyKey, b: PartyKey) -> bool:
        """May parties a and b exchange data? Always under the open policy; else only with an agreement."""
        if self.agreements is None or a == b:
            return True
        return (a, b) in self.agreements or (b, a) in self.agreements

    def authenticate(self, authorization: str | None) -> Caller | None:
        for token, form in parse_authorization(authorization):
            platform_id = self.by_token_hash.get(hash_token(token))
            if platform_id is not None:
                return Caller(self.platforms[platform_id], token, form)
        return None


async def _fingerprint(session: AsyncSession) -> tuple[object, ...]:
    # status_changed_at too: a platform going OFFLINE or CONNECTED changes no registration data (updated_at), but
    # the snapshot's connection_status must follow, or traffic from an OFFLINE platform never makes it CONNECTED.
    platforms = (
        await session.execute(
            select(func.count(Platform.id), func.max(Platform.updated_at), func.max(Platform.status_changed_at))
        )
    ).one()
    agreements = (
        await session.execute(select(func.count(RoamingAgreement.id), func.max(RoamingAgreement.updated_at)))
    ).one()
    return (*platforms, *agreements)


async def load_snapshot(
    sessions: async_sessionmaker[AsyncSession], cipher: TokenCipher, *, policy: str, now: datetime
) -> RoutingSnapshot:
    async with sessions() as session:
        fingerprint = await _fingerprint(session)
        platforms = (
            await session.scalars(
                select(Platform)
                .where(Platform.status == RegistrationStatus.REGISTERED)
                .options(selectinload(Platform.parties), selectinload(Platform.endpoints))
            )
        ).all()
        agreements: frozenset[tuple[PartyKey, PartyKey]] | None = None
        if policy == "agreements":
            rows = (
                await session.execute(
                    select(
                        RoamingAgreement.cpo_country_code,
                        RoamingAgreement.cpo_party_id,
                        RoamingAgreement.emsp_country_code,
                        RoamingAgreement.emsp_party_id,
                    ).where(
                        RoamingAgreement.active.is_(True),
                        or_(RoamingAgreement.valid_from.is_(None), RoamingAgreement.valid_from <= now),
                        or_(RoamingAgreement.valid_to.is_(None), RoamingAgreement.valid_to > now),
                    )
                )
            ).all()
            agreements = frozenset(((a, b), (c, d)) for a, b, c, d in rows)
    routes: dict[int, PlatformRoute] = {}
    by_token: dict[str, int] = {}
    by_party: dict[PartyKey, int] = {}
    roles: dict[PartyKey, set[str]] = {}
    for platform in platforms:
        token = None
        if platform.outbound_token is not None:
            try:
                token = cipher.decrypt(platform.outbound_token)
            except ValueError:
                log.error("cannot decrypt the token for a platform", platform_id=platform.id)
        active = frozenset((p.country_code, p.party_id, p.role) for p in platform.parties if p.active_key)
        route = PlatformRoute(
            platform_id=platform.id,
            name=platform.name,
            status=platform.status,
            connection_status=platform.connection_status,
            token=token,
            token_form=platform.token_form,
            endpoints={(e.identifier, e.role): e.url.rstrip("/") for e in platform.endpoints},
            parties=active,
        )
        routes[platform.id] = route
        if platform.inbound_token_hash:
            by_token[platform.inbound_token_hash] = platform.id
        for cc, pid, role in active:
            by_party[(cc, pid)] = platform.id
            roles.setdefault((cc, pid), set()).add(role)
    return RoutingSnapshot(
        platforms=routes,
        by_token_hash=by_token,
        by_party=by_party,
        roles_of_party={key: frozenset(value) for key, value in roles.items()},
        agreements=agreements,
        fingerprint=fingerprint,
    )


class RoutingTable:
    """Holds the current snapshot and keeps it fresh."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cipher: TokenCipher,
        clock: Clock,
        *,
        policy: str,
        poll_interval: float = 2.0,
    ) -> None:
        self._sessions = sessions
        self._cipher = cipher
        self._clock = clock
        self._policy = policy
        self._poll_interval = poll_interval
        self.snapshot = RoutingSnapshot(agreements=None if policy == "open" else frozenset())
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[RoutingSnapshot], Awaitable[None]]] = []

    def on_reload(self, listener: Callable[[RoutingSnapshot], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def reload(self) -> RoutingSnapshot:
        async with self._lock:
            snapshot = await load_snapshot(self._sessions, self._cipher, policy=self._policy, now=self._clock.now())
            self.snapshot = snapshot
        for listener in self._listeners:
            await listener(snapshot)
        return snapshot

    async def authenticate(self, authorization: str | None) -> Caller | None:
        caller = self.snapshot.authenticate(authorization)
        if caller is not None or not authorization:
            return caller
        # Unknown to the snapshot: maybe registered a moment ago through another process. One indexed query
        # decides; only a real hit pays for a reload, so unknown tokens never trigger reload storms.
        hashes = [hash_token(token) for token, _ in parse_authorization(authorization)]
        if not hashes:
            return None
        async with self._sessions() as session:
            found = await session.scalar(
                select(Platform.id).where(
                    Platform.inbound_token_hash.in_(hashes), Platform.status == RegistrationStatus.REGISTERED
                )
            )
        if found is None:
            return None
        return (await self.reload()).authenticate(authorization)

    async def start(self) -> None:
        await self.reload()
        self._poller = asyncio.create_task(self._poll(), name="routing-table-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                async with self._sessions() as session:
                    fingerprint = await _fingerprint(session)
                if fingerprint != self.snapshot.fingerprint:
                    await self.reload()
            except Exception:  # a database hiccup must not kill the poller; the next round retries
                log.exception("routing table refresh failed")
