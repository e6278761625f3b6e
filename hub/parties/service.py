"""The party registry and both directions of the credentials handshake (credentials §Registration, §Update, §Delete).

Network calls to a partner never run inside a database transaction: the service reads what it needs, talks to the
partner, then writes in one short transaction that re-checks what it read. Token A, B and C follow the specification:
whoever receives the credentials POST creates the token the other side will use from then on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import WireError, decode, encode
from hub.ocpi.envelope import OcpiStatus
from hub.ocpi.types import ci_key
from hub.parties.auth import Caller
from hub.parties.discovery import Discovery, _RawEnvelope, discover
from hub.parties.models import (
    ConnectionStatus,
    Direction,
    Party,
    Platform,
    PlatformEndpoint,
    RegistrationStatus,
    TokenForm,
)
from hub.platform.clock import Clock, iso_utc
from hub.platform.crypto import TokenCipher, hash_token, new_token
from hub.platform.http import PartnerCallError, PartnerClient
from hub.platform.ssrf import UnsafeUrlError, check_url
from hub.platform.web import OcpiError

log = structlog.get_logger("hub.parties")


class RegistryError(Exception):
    """An operator-side failure (CLI, admin API) with a message meant for a human."""


class PlatformNotFoundError(RegistryError):
    """No platform has the id an operator gave."""


# The registration status of a platform an operator suspended (beside RegistrationStatus): its tokens open nothing
# and routing skips it, but its parties stay reserved to it until it is activated again or deleted.


def _credentials_url(platform: Platform) -> str | None:
    return next((e.url for e in platform.endpoints if e.identifier == "credentials"), None)


@dataclass(frozen=True, slots=True)
class HubIdentity:
    country_code: str
    party_id: str
    name: str
    versions_url: str

    def credentials(self, token: str) -> ocpi.Credentials:
        # credentials §Credentials object, 2.2.1: a hub reports exactly one role, HUB; the parties behind it are
        # announced through HubClientInfo, never in these roles.
        return ocpi.Credentials(
            token=token,
            url=self.versions_url,
            roles=[
                ocpi.CredentialsRole(
                    role=ocpi.Role.HUB,
                    business_details=ocpi.BusinessDetails(name=self.name),
                    party_id=self.party_id,
                    country_code=self.country_code,
                )
            ],
        )


def _role_key(role: ocpi.CredentialsRole) -> str:
    return f"{ci_key(role.country_code)}/{ci_key(role.party_id)}/{role.role}"


def _check_roles_unique(roles: list[ocpi.CredentialsRole]) -> None:
    # credentials §CredentialsRole: (role, party_id, country_code) must be unique within one credentials object.
    seen: set[str] = set()
    for role in roles:
        key = _role_key(role)
        if key in seen:
            raise OcpiError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"role {key} is listed twice in roles")
        seen.add(key)
        if role.role == ocpi.Role.HUB:
            raise OcpiError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "a platform behind this hub cannot be a HUB")


class PartyRegistry:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        identity: HubIdentity,
        cipher: TokenCipher,
        client: PartnerClient,
        clock: Clock,
        partner_timeout: float,
        allow_private_peers: bool,
    ) -> None:
        self._sessions = sessions
        self.identity = identity
        self._cipher = cipher
        self._client = client
        self._clock = clock
        self._timeout = partner_timeout
        self._allow_private = allow_private_peers
        # Called with the platform id after every committed registration change (routing reloads its table and
        # announces the change in HubClientInfo; the registry itself knows nothing of routing).
        self._listeners: list[Callable[[int], Awaitable[None]]] = []

    def on_change(self, listener: Callable[[int], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def _changed(self, platform_id: int) -> None:
        for listener in self._listeners:
            try:
                await listener(platform_id)
            except Exception:  # a listener failing must not undo or fail a committed registration
                log.exception("registry change listener failed", platform_id=platform_id)

    # ---- reading -------------------------------------------------------------------------------------------------

    async def get_platform(self, platform_id: int) -> Platform:
        async with self._sessions() as session:
            platform = await session.get(
                Platform, platform_id, options=[selectinload(Platform.parties), selectinload(Platform.endpoints)]
            )
        if platform is None:
            raise PlatformNotFoundError(f"no platform with id {platform_id}")
        return platform

    async def list_platforms(self) -> list[Platform]:
        async with self._sessions() as session:
            result = await session.scalars(
                select(Platform)
                .options(selectinload(Platform.parties), selectinload(Platform.endpoints))
                .order_by(Platform.id)
            )
            return list(result)

    async def outbound_token(self, platform: Platform) -> str | None:
        return None if platform.outbound_token is None else self._cipher.decrypt(platform.outbound_token)

    # ---- operator actions ----------------------------------------------------------------------------------------

    async def invite(self, name: str) -> tuple[Platform, str]:
        """Create a platform that will register itself, and the token A the operator hands over out of band."""
        name = name.strip()
        if not name or len(name) > 100:
            raise RegistryError("a platform name of 1 to 100 characters is required")
        token_a = new_token()
        now = self._clock.now()
        async with self._sessions.begin() as session:
            platform = Platform(
                name=name,
                status=RegistrationStatus.INVITED,
                direction=Direction.INBOUND,
                token_a_hash=hash_token(token_a),
                token_form=TokenForm.BASE64,
                created_at=now,
                updated_at=now,
            )
            session.add(platform)
        return platform, token_a

    async def connect(self, versions_url: str, token_a: str, *, name: str | None = None) -> Platform:
        """Register the hub with a platform that issued us a token A (the hub is the handshake's Sender)."""
        try:
            await check_url(versions_url, allow_private=self._allow_private)
        except UnsafeUrlError as exc:
            raise RegistryError(str(exc)) from exc
        try:
            discovery = await discover(
                self._client,
                versions_url,
                token=token_a,
                token_form=TokenForm.BASE64,
                timeout=self._timeout,
                allow_private=self._allow_private,
                try_other_form=True,
            )
        except OcpiError as exc:
            raise RegistryError(f"cannot use the platform's API ({exc.status_code}): {exc.message}") from exc
        credentials_url = discovery.endpoint_url("credentials")
        if credentials_url is None:  # discover() checks the required endpoints; this keeps the type honest
            raise RegistryError("the platform offers no credentials endpoint")
        # Token B: the platform will use it to call us, starting with its callback to our versions during the POST.
        token_b = new_token()
        now = self._clock.now()
        async with self._sessions.begin() as session:
            platform = Platform(
                name=name or versions_url,
                status=RegistrationStatus.CONNECTING,
                direction=Direction.OUTBOUND,
                version=discovery.version,
                versions_url=versions_url,
                inbound_token_hash=hash_token(token_b),
                token_form=discovery.token_form,
                created_at=now,
                updated_at=now,
            )
            session.add(platform)
        try:
            credentials = await self._post_credentials(credentials_url, token_a, token_b, discovery.token_form)
            _check_roles_unique(list(credentials.roles))
        except (RegistryError, OcpiError) as exc:
            await self._abandon(platform.id)
            message = exc.message if isinstance(exc, OcpiError) else str(exc)
            raise RegistryError(message) from exc
        try:
            await self._store_registration(platform.id, credentials, discovery, expect=RegistrationStatus.CONNECTING)
        except OcpiError as exc:
            # Our token C is live at the partner; withdraw it so neither side keeps a half-registration.
            await self._delete_at_partner(credentials_url, credentials.token, discovery.token_form)
            await self._abandon(platform.id)
            raise RegistryError(exc.message) from exc
        await self._changed(platform.id)
        return await self.get_platform(platform.id)

    async def _post_credentials(
        self, url: str, token_a: str, token_b: str, form: str, *, method: str = "POST"
    ) -> ocpi.Credentials:
        body = encode(self.identity.credentials(token_b))
        try:
            result = await self._client.request(method, url, token=token_a, token_form=form, body=body, timeout=30)
        except PartnerCallError as exc:
            raise RegistryError(f"credentials {method} failed: {exc.message}") from exc
        try:
            envelope = decode(result.body, _RawEnvelope)
        except WireError as exc:
            raise RegistryError(f"credentials {method} answered HTTP {result.status} without an OCPI envelope") from exc
        if result.status not in (200, 201) or envelope.status_code != OcpiStatus.SUCCESS:
            what = "registration" if method == "POST" else "credentials update"
            raise RegistryError(
                f"the platform refused the {what}: HTTP {result.status}, status {envelope.status_code}"
                f" {envelope.status_message or ''}".rstrip()
            )
        try:
            return decode(bytes(envelope.data), ocpi.Credentials)
        except WireError as exc:
            raise RegistryError(f"the platform's credentials are invalid: {exc.message}") from exc

    async def _delete_at_partner(self, url: str, token: str, form: str) -> None:
        # Best effort: the operator sees the registration failure either way.
        with contextlib.suppress(PartnerCallError):
            await self._client.request("DELETE", url, token=token, token_form=form, timeout=self._timeout)

    async def _abandon(self, platform_id: int) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Platform)
                .where(Platform.id == platform_id)
                .values(status=RegistrationStatus.UNREGISTERED, inbound_token_hash=None, updated_at=self._clock.now())
            )

    # ---- operator actions on a platform (admin API, CLI) -------------------------------------------------------

    async def suspend(self, platform_id: int) -> Platform:
        """Stop a registered platform for now: its token opens nothing, routing drops it, and its parties are
        announced SUSPENDED in HubClientInfo. Its parties stay reserved to it; ``activate`` undoes this."""
        await self._set_operator_status(
            platform_id,
            expect=RegistrationStatus.REGISTERED,
            status=RegistrationStatus.SUSPENDED,
            connection=ConnectionStatus.SUSPENDED,
            refusal="only a REGISTERED platform can be suspended",
        )
        await self._changed(platform_id)
        return await self.get_platform(platform_id)

    async def activate(self, platform_id: int) -> Platform:
        """Undo ``suspend``: the platform's token works again and its parties are announced CONNECTED."""
        await self._set_operator_status(
            platform_id,
            expect=RegistrationStatus.SUSPENDED,
            status=RegistrationStatus.REGISTERED,
            connection=ConnectionStatus.CONNECTED,
            refusal="only a SUSPENDED platform can be activated",
        )
        await self._changed(platform_id)
        return await self.get_platform(platform_id)

    async def _set_operator_status(
        self, platform_id: int, *, expect: str, status: str, connection: ConnectionStatus, refusal: str
    ) -> None:
        now = self._clock.now()
        async with self._sessions.begin() as session:
            platform = await session.get(Platform, platform_id, with_for_update=True)
            if platform is None:
                raise PlatformNotFoundError(f"no platform with id {platform_id}")
            if platform.status != expect:
                raise RegistryError(f"{refusal}; platform {platform_id} is {platform.status}")
            platform.status = status
            platform.connection_status = connection
            platform.status_changed_at = now
            platform.updated_at = now

    async def delete(self, platform_id: int) -> tuple[Platform, bool]:
        """Unregister a platform for good, as a credentials DELETE from our side (credentials §DELETE).

        The hub first asks the platform to delete the hub's credentials (best effort, with the token the hub
        uses to call it); every token then dies and the parties leave the registry whatever the platform answered.
        Returns the platform and whether the platform accepted the DELETE.
        """
        platform = await self.get_platform(platform_id)
        if platform.status == RegistrationStatus.UNREGISTERED:
            raise RegistryError(f"platform {platform_id} is already unregistered")
        told = False
        credentials_url = _credentials_url(platform)
        token = await self.outbound_token(platform)
        if credentials_url is not None and token is not None:
            try:
                result = await self._client.request(
                    "DELETE", credentials_url, token=token, token_form=platform.token_form, timeout=self._timeout
                )
                told = result.status == 200
            except PartnerCallError as exc:
                log.warning("credentials DELETE at the platform failed", platform_id=platform_id, error=exc.message)
        await self._unregister(platform_id)
        await self._changed(platform_id)
        return await self.get_platform(platform_id), told

    async def rotate(self, platform_id: int) -> Platform:
        """The hub renews the credentials with a registered platform (credentials §PUT, the hub as Sender).

        A new token for the platform to call us goes in a PUT to its credentials endpoint; the token C it answers
        is stored encrypted and replaces the one the hub used. The platform's old token stops working: the new one
        is accepted from just before the PUT (the platform fetches our versions with it while it handles the PUT),
        and the old one is put back if the platform refuses or cannot be reached.
        """
        platform = await self.get_platform(platform_id)
        if platform.status != RegistrationStatus.REGISTERED:
            raise RegistryError(f"only a REGISTERED platform can rotate credentials; it is {platform.status}")
        credentials_url = _credentials_url(platform)
        token = await self.outbound_token(platform)
        if credentials_url is None or token is None or platform.inbound_token_hash is None:
            raise RegistryError("the platform has no credentials endpoint or token to rotate with")
        old_hash = platform.inbound_token_hash
        token_b = new_token()
        await self._swap_inbound_hash(platform_id, old_hash, hash_token(token_b))
        try:
            credentials = await self._post_credentials(
                credentials_url, token, token_b, platform.token_form, method="PUT"
            )
        except RegistryError:
            await self._swap_inbound_hash(platform_id, hash_token(token_b), old_hash)
            raise
        # From here the platform holds our new token and we hold its token C: keep C whatever happens next (if its
        # roles or endpoints cannot be taken over, the previous ones stay).
        try:
            _check_roles_unique(list(credentials.roles))
            await self._check_collisions(credentials.roles, platform_id)
            discovery = await discover(
                self._client,
                credentials.url,
                token=credentials.token,
                token_form=platform.token_form,
                timeout=self._timeout,
                allow_private=self._allow_private,
            )
            await self._store_registration(
                platform_id,
                credentials,
                discovery,
                expect=RegistrationStatus.REGISTERED,
                inbound_token=token_b,
                outbound_token=credentials.token,
                previous_token_hash=hash_token(token_b),
            )
        except OcpiError as exc:
            log.warning("roles and endpoints kept after a rotation", platform_id=platform_id, error=exc.message)
            async with self._sessions.begin() as session:
                await session.execute(
                    update(Platform)
                    .where(Platform.id == platform_id)
                    .values(outbound_token=self._cipher.encrypt(credentials.token), updated_at=self._clock.now())
                )
        await self._changed(platform_id)
        return await self.get_platform(platform_id)

    async def _swap_inbound_hash(self, platform_id: int, current: str, new: str) -> None:
        # updated_at is left alone: other processes keep their routing snapshot (with the old token) until the
        # rotation is stored, so the platform's own traffic meets no gap while the PUT is under way.
        async with self._sessions.begin() as session:
            swapped = (
                await session.execute(  # type: ignore[attr-defined]  # an UPDATE's CursorResult has rowcount
                    update(Platform)
                    .where(
                        Platform.id == platform_id,
                        Platform.status == RegistrationStatus.REGISTERED,
                        Platform.inbound_token_hash == current,
                    )
                    .values(inbound_token_hash=new)
                )
            ).rowcount
        if not swapped:
            raise RegistryError("the registration changed while it was processed; retry")

    # ---- the credentials endpoint (the hub is the handshake's Receiver) ----------------------------------------

    async def register(self, caller: Caller, body: ocpi.Credentials) -> ocpi.Credentials:
        """Credentials POST: the platform registers with the token A it was given (credentials §POST)."""
        platform = await self.get_platform(caller.platform_id)
        if platform.status != RegistrationStatus.INVITED:
            # Only a token A is accepted here; a registered platform must use PUT (credentials §POST: 405).
            raise OcpiError(
                OcpiStatus.CLIENT_ERROR, "already registered: use PUT to update credentials", http_status=405
            )
        return await self._accept(caller, body, expect=RegistrationStatus.INVITED)

    async def update(self, caller: Caller, body: ocpi.Credentials) -> ocpi.Credentials:
        """Credentials PUT: new endpoints are read again and both tokens are replaced (credentials §PUT)."""
        if not caller.registered:
            raise OcpiError(OcpiStatus.CLIENT_ERROR, "not registered: use POST to register", http_status=405)
        # One transaction swaps the token hash: the old token works until it commits, the new one from then on, and
        # the platform learns the new one only from this response, so no request of its own meets a gap.
        return await self._accept(
            caller, body, expect=RegistrationStatus.REGISTERED, previous_token_hash=hash_token(caller.token)
        )

    async def _accept(
        self,
        caller: Caller,
        body: ocpi.Credentials,
        *,
        expect: RegistrationStatus,
        previous_token_hash: str | None = None,
    ) -> ocpi.Credentials:
        """The Receiver's side of POST and PUT: check the roles, read the platform's endpoints with the token it
        sent (even when the version is unchanged, credentials §PUT), store everything, answer with a new token C.
        """
        _check_roles_unique(list(body.roles))
        await self._check_collisions(body.roles, caller.platform_id)
        discovery = await discover(
            self._client,
            body.url,
            token=body.token,
            token_form=caller.token_form,
            timeout=self._timeout,
            allow_private=self._allow_private,
        )
        token_c = new_token()
        await self._store_registration(
            caller.platform_id,
            body,
            discovery,
            expect=expect,
            inbound_token=token_c,
            outbound_token=body.token,
            previous_token_hash=previous_token_hash,
        )
        await self._changed(caller.platform_id)
        return self.identity.credentials(token_c)

    async def unregister(self, caller: Caller) -> None:
        """Credentials DELETE: every token dies and the platform's parties leave the registry (credentials §DELETE)."""
        if not caller.registered:
            raise OcpiError(OcpiStatus.CLIENT_ERROR, "not registered: nothing to delete", http_status=405)
        await self._unregister(caller.platform_id)
        await self._changed(caller.platform_id)

    async def _unregister(self, platform_id: int) -> None:
        now = self._clock.now()
        async with self._sessions.begin() as session:
            await session.execute(
                update(Platform)
                .where(Platform.id == platform_id)
                .values(
                    status=RegistrationStatus.UNREGISTERED,
                    inbound_token_hash=None,
                    token_a_hash=None,
                    outbound_token=None,
                    connection_status=ConnectionStatus.SUSPENDED,
                    status_changed_at=now,
                    updated_at=now,
                )
            )
            await session.execute(update(Party).where(Party.platform_id == platform_id).values(active_key=None))

    # ---- shared steps --------------------------------------------------------------------------------------------

    async def _check_collisions(
        self, roles: list[ocpi.CredentialsRole] | tuple[ocpi.CredentialsRole, ...], own: int
    ) -> None:
        keys = [_role_key(role) for role in roles]
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(Party.active_key, Platform.id, Platform.name)
                    .join(Platform, Party.platform_id == Platform.id)
                    .where(Party.active_key.in_(keys), Party.platform_id != own)
                )
            ).all()
        if rows:
            taken = "; ".join(f"{key} is registered by platform {name!r} (id {pid})" for key, pid, name in rows)
            raise OcpiError(
                OcpiStatus.INVALID_OR_MISSING_PARAMETERS,
                f"party already registered through another platform: {taken}",
            )

    async def _store_registration(
        self,
        platform_id: int,
        credentials: ocpi.Credentials,
        discovery: Discovery,
        *,
        expect: RegistrationStatus,
        inbound_token: str | None = None,
        outbound_token: str | None = None,
        previous_token_hash: str | None = None,
    ) -> None:
        """Write the outcome of a handshake in one transaction, re-checking the state read before the network calls."""
        now = self._clock.now()
        outbound = credentials.token if outbound_token is None else outbound_token
        try:
            async with self._sessions.begin() as session:
                platform = await session.get(
                    Platform,
                    platform_id,
                    options=[selectinload(Platform.parties), selectinload(Platform.endpoints)],
                    with_for_update=True,
                )
                if (
                    platform is None
                    or platform.status != expect
                    or (previous_token_hash is not None and platform.inbound_token_hash != previous_token_hash)
                ):
                    raise OcpiError(
                        OcpiStatus.CLIENT_ERROR,
                        "the registration changed while it was processed; retry",
                        http_status=405,
                    )
                platform.status = RegistrationStatus.REGISTERED
                if platform.connection_status != ConnectionStatus.CONNECTED:
                    platform.connection_status = ConnectionStatus.CONNECTED
                    platform.status_changed_at = now
                platform.version = discovery.version
                platform.versions_url = (
                    credentials.url if expect != RegistrationStatus.CONNECTING else platform.versions_url
                )
                platform.token_a_hash = None  # token A is dead once registered (credentials §Registration step 6)
                if inbound_token is not None:
                    platform.inbound_token_hash = hash_token(inbound_token)
                platform.outbound_token = self._cipher.encrypt(outbound)
                platform.token_form = discovery.token_form
                platform.updated_at = now
                platform.registered_at = platform.registered_at or now
                self._replace_parties(platform, credentials.roles)
                platform.endpoints.clear()
                await session.flush()
                platform.endpoints.extend(
                    PlatformEndpoint(identifier=str(e.identifier), role=str(e.role), url=e.url)
                    for e in discovery.endpoints
                )
        except IntegrityError as exc:
            # Another platform registered one of these parties between our check and this write.
            raise OcpiError(
                OcpiStatus.INVALID_OR_MISSING_PARAMETERS,
                "party already registered through another platform (concurrent registration)",
            ) from exc

    @staticmethod
    def _replace_parties(
        platform: Platform, roles: list[ocpi.CredentialsRole] | tuple[ocpi.CredentialsRole, ...]
    ) -> None:
        existing = {f"{p.country_code}/{p.party_id}/{p.role}": p for p in platform.parties}
        wanted = {_role_key(role): role for role in roles}
        for key, party in existing.items():
            party.active_key = key if key in wanted else None
        for key, role in wanted.items():
            details = msgspec.json.encode(role.business_details).decode()
            current = existing.get(key)
            if current is None:
                platform.parties.append(
                    Party(
                        country_code=ci_key(role.country_code),
                        party_id=ci_key(role.party_id),
                        role=str(role.role),
                        business_name=role.business_details.name,
                        business_details=details,
                        active_key=key,
                    )
                )
            else:
                current.business_name = role.business_details.name
                current.business_details = details


def platform_as_dict(platform: Platform) -> dict[str, object]:
    """The JSON shape of a registered platform printed by the CLI and served by the admin API."""
    return {
        "id": platform.id,
        "name": platform.name,
        "status": platform.status,
        "connection_status": platform.connection_status,
        "direction": platform.direction,
        "version": platform.version,
        "versions_url": platform.versions_url,
        "token_form": platform.token_form,
        "registered_at": iso_utc(platform.registered_at),
        "created_at": iso_utc(platform.created_at),
        "updated_at": iso_utc(platform.updated_at),
        "parties": [
            {
                "country_code": p.country_code,
                "party_id": p.party_id,
                "role": p.role,
                "name": p.business_name,
                "active": p.active_key is not None,
            }
            for p in platform.parties
        ],
        "endpoints": [{"identifier": e.identifier, "role": e.role, "url": e.url} for e in platform.endpoints],
    }
