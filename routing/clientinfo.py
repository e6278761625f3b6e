"""HubClientInfo: telling every connected platform which parties exist behind the hub and whether they are reachable.

mod_hub_client_info: the hub is the Sender. It PUTs a ClientInfo to every connected platform's RECEIVER endpoint
whenever a party's status changes (a new registration, a deletion, a platform going OFFLINE or coming back), and
answers a paginated GET of all ClientInfo. A party the roaming policy does not let the viewer roam with is shown as
PLANNED (DESIGN §4). Reachability follows from traffic, from deliveries and from the still-alive probe: a GET of the
platform's versions endpoint after a configurable silence (mod_hub_client_info §still alive check).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import msgspec
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from hub.ocpi.types import format_datetime
from hub.parties.models import ConnectionStatus, Party, Platform, RegistrationStatus
from hub.platform.clock import Clock
from hub.platform.crypto import TokenCipher
from hub.platform.http import PartnerCallError, PartnerClient
from routing import outbox
from routing.messagelog import MessageLogRow
from routing.table import PartyKey, RoutingTable

log = structlog.get_logger("routing.clientinfo")


class ClientInfo(msgspec.Struct):
    """mod_hub_client_info §ClientInfo object, encoded by the hub (the owner of this data)."""

    party_id: str
    country_code: str
    role: str
    status: str
    last_updated: str


def _client_info(party: Party, status: str, changed: datetime) -> ClientInfo:
    return ClientInfo(party.party_id, party.country_code, party.role, status, format_datetime(changed))


class ClientInfoService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        table: RoutingTable | None,
        cipher: TokenCipher,
        client: PartnerClient,
        clock: Clock,
        liveness_after: float = 300.0,
        probe_timeout: float = 10.0,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._cipher = cipher
        self._client = client
        self._clock = clock
        self._liveness_after = liveness_after
        self._probe_timeout = probe_timeout
        # Last time each platform called us, kept in memory: a database write per request would cost every call.
        self.last_seen: dict[int, float] = {}

    # ---- status changes ---------------------------------------------------------------------------------------------

    async def platform_changed(self, platform_id: int) -> None:
        """After a registration, rotation or deletion: announce the platform's parties, and catch a newcomer up."""
        async with self._sessions.begin() as session:
            platform = await session.get(
                Platform, platform_id, options=[selectinload(Platform.parties), selectinload(Platform.endpoints)]
            )
            if platform is None:
                return
            await self._announce(session, platform)
            if platform.status == RegistrationStatus.REGISTERED:
                await self._catch_up(session, platform)

    async def set_status(self, platform_id: int, status: ConnectionStatus, *, reason: str) -> bool:
        """Move a registered platform to CONNECTED or OFFLINE; True when that was a change (then it is announced)."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            changed = (
                await session.execute(  # type: ignore[attr-defined]  # an UPDATE's CursorResult has rowcount
                    update(Platform)
                    .where(
                        Platform.id == platform_id,
                        Platform.status == RegistrationStatus.REGISTERED,
                        Platform.connection_status != status,
                    )
                    .values(connection_status=status, status_changed_at=now)
                )
            ).rowcount
            if not changed:
                return False
            platform = await session.get(Platform, platform_id, options=[selectinload(Platform.parties)])
            if platform is not None:
                await self._announce(session, platform)
        log.info("platform status changed", platform_id=platform_id, status=status, reason=reason)
        if self._table is not None:
            # This process's routing snapshot learns the new status now (others at their next fingerprint check).
            await self._table.reload()
        return True

    async def _targets(self, session: AsyncSession, exclude: int) -> list[Platform]:
        return list(
            (
                await session.scalars(
                    select(Platform)
                    .where(Platform.status == RegistrationStatus.REGISTERED, Platform.id != exclude)
                    .options(selectinload(Platform.endpoints), selectinload(Platform.parties))
                )
            ).all()
        )

    def _visible_status(self, platform_status: str, viewer: Platform, party: PartyKey) -> str:
        if platform_status in (ConnectionStatus.SUSPENDED, ConnectionStatus.PLANNED):
            return platform_status
        snapshot = self._table.snapshot if self._table is not None else None
        if snapshot is not None and snapshot.agreements is not None:
            viewer_parties = {(p.country_code, p.party_id) for p in viewer.parties if p.active_key}
            if not any(snapshot.permitted(v, party) for v in viewer_parties):
                return ConnectionStatus.PLANNED  # DESIGN §4: no agreement, shown as not (yet) connected
        return platform_status

    async def _announce(self, session: AsyncSession, platform: Platform) -> None:
        """PUT this platform's parties' ClientInfo to every other registered platform that can receive it."""
        status = platform.connection_status
        if platform.status == RegistrationStatus.UNREGISTERED:
            status = ConnectionStatus.SUSPENDED  # "deleting" a ClientInfo is a PUT with SUSPENDED (mod §PUT)
        changed = platform.status_changed_at or self._clock.now()
        for target in await self._targets(session, exclude=platform.id):
            url = next(
                (e.url for e in target.endpoints if e.identifier == "hubclientinfo" and e.role == "RECEIVER"), None
            )
            if url is None:
                continue
            for party in platform.parties:
                if party.active_key is None and status != ConnectionStatus.SUSPENDED:
                    continue
                key = (party.country_code, party.party_id)
                info = _client_info(party, self._visible_status(status, target, key), changed)
                await self._enqueue(session, target.id, url, info)

    async def _catch_up(self, session: AsyncSession, newcomer: Platform) -> None:
        """A platform that just registered learns about every party already behind the hub."""
        url = next(
            (e.url for e in newcomer.endpoints if e.identifier == "hubclientinfo" and e.role == "RECEIVER"), None
        )
        if url is None:
            return
        for other in await self._targets(session, exclude=newcomer.id):
            changed = other.status_changed_at or self._clock.now()
            for party in other.parties:
                if party.active_key is None:
                    continue
                status = self._visible_status(other.connection_status, newcomer, (party.country_code, party.party_id))
                await self._enqueue(session, newcomer.id, url, _client_info(party, status, changed))

    async def _enqueue(self, session: AsyncSession, receiver_id: int, url: str, info: ClientInfo) -> None:
        await outbox.enqueue(
            session,
            receiver_platform_id=receiver_id,
            kind="clientinfo",
            method="PUT",
            url=f"{url.rstrip('/')}/{info.country_code}/{info.party_id}",
            body=msgspec.json.encode(info),
            # Configuration module: no routing headers (transport §routing headers).
            headers={},
            object_key=f"clientinfo/{info.country_code}/{info.party_id}/{info.role}",
            coalesce=True,
        )

    # ---- Sender GET -------------------------------------------------------------------------------------------------

    async def page(
        self,
        viewer_platform_id: int,
        *,
        offset: int,
        limit: int,
        date_from: datetime | None,
        date_to: datetime | None,
    ) -> tuple[list[bytes], int]:
        async with self._sessions() as session:
            viewer = await session.get(Platform, viewer_platform_id, options=[selectinload(Platform.parties)])
            rows = (
                await session.execute(
                    select(Party, Platform.connection_status, Platform.status, Platform.status_changed_at)
                    .join(Platform, Party.platform_id == Platform.id)
                    .where(
                        Platform.status.in_(
                            [
                                RegistrationStatus.REGISTERED,
                                RegistrationStatus.SUSPENDED,
                                RegistrationStatus.UNREGISTERED,
                            ]
                        )
                    )
                    .order_by(Party.id)
                )
            ).all()
        items: list[ClientInfo] = []
        for party, connection, registration, changed in rows:
            # Deleted or suspended by an operator: gone for the others (mod_hub_client_info §ConnectionStatus).
            gone = registration in (RegistrationStatus.UNREGISTERED, RegistrationStatus.SUSPENDED)
            status = ConnectionStatus.SUSPENDED if gone else connection
            if viewer is not None:
                status = self._visible_status(status, viewer, (party.country_code, party.party_id))
            stamp = changed or datetime(1970, 1, 1, tzinfo=UTC)
            if (date_from and stamp < date_from) or (date_to and stamp >= date_to):
                continue
            items.append(_client_info(party, status, stamp))
        return [msgspec.json.encode(info) for info in items[offset : offset + limit]], len(items)

    # ---- traffic and the still-alive probe --------------------------------------------------------------------------

    def seen(self, platform_id: int) -> None:
        self.last_seen[platform_id] = time.monotonic()

    async def probe_silent(self) -> list[int]:
        """GET the versions of every platform silent for longer than the liveness interval; returns probed ids."""
        cutoff = time.monotonic() - self._liveness_after
        since = self._clock.now() - timedelta(seconds=self._liveness_after)
        async with self._sessions() as session:
            platforms = list(
                (await session.scalars(select(Platform).where(Platform.status == RegistrationStatus.REGISTERED))).all()
            )
            # Traffic seen by any process (the message log) counts, not only this process's own memory.
            heard = set(
                (
                    await session.scalars(
                        select(MessageLogRow.platform_id)
                        .where(MessageLogRow.direction == "in", MessageLogRow.at >= since)
                        .group_by(MessageLogRow.platform_id)
                    )
                ).all()
            )
        probed: list[int] = []
        for platform in platforms:
            recent = self.last_seen.get(platform.id, float("-inf")) > cutoff or platform.id in heard
            if recent or not platform.versions_url or not platform.outbound_token:
                continue
            probed.append(platform.id)
            try:
                result = await self._client.request(
                    "GET",
                    platform.versions_url,
                    token=self._cipher.decrypt(platform.outbound_token),
                    token_form=platform.token_form,
                    timeout=self._probe_timeout,
                )
                alive = result.status == 200
            except PartnerCallError:
                alive = False
            if alive:
                self.seen(platform.id)
            await self.set_status(
                platform.id,
                ConnectionStatus.CONNECTED if alive else ConnectionStatus.OFFLINE,
                reason="still-alive probe " + ("answered" if alive else "failed"),
            )
        return probed
