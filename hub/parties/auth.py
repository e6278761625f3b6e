"""Who is calling: the credentials token in ``Authorization`` identifies the platform (transport_and_format §4.1).

Only hashes are stored, so a candidate token is hashed and looked up. The Base64 reading is tried before the raw one;
the form that matched is remembered, because the hub answers a platform in the form it uses itself (DESIGN §7).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.ocpi.envelope import OcpiStatus
from hub.ocpi.headers import parse_authorization
from hub.parties.models import Platform, RegistrationStatus
from hub.platform.crypto import hash_token
from hub.platform.web import OcpiError


@dataclass(frozen=True, slots=True)
class Caller:
    platform_id: int
    token: str
    token_form: str
    # False for a token A, and for the token the hub handed a platform it is still registering with: such a token
    # opens only versions and credentials (credentials §Registration).
    registered: bool


def unauthorized(message: str) -> OcpiError:
    # transport_and_format §4.1.1: missing or unknown token → HTTP 401 (the envelope still carries the details).
    return OcpiError(OcpiStatus.CLIENT_ERROR, message, http_status=401)


async def authenticate(sessions: async_sessionmaker[AsyncSession], authorization: str | None) -> Caller:
    if not authorization:
        raise unauthorized("missing Authorization header")
    candidates = parse_authorization(authorization)
    if not candidates:
        raise unauthorized("Authorization must be 'Token <credentials token>'")
    hashes = {hash_token(token): (token, form) for token, form in candidates}
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Platform.id, Platform.status, Platform.token_a_hash, Platform.inbound_token_hash).where(
                    or_(Platform.inbound_token_hash.in_(hashes), Platform.token_a_hash.in_(hashes))
                )
            )
        ).all()
    # Prefer the Base64 reading when both readings match something (parse_authorization lists it first).
    for token_hash, (token, form) in hashes.items():
        for platform_id, status, token_a_hash, inbound_hash in rows:
            if inbound_hash == token_hash and status == RegistrationStatus.REGISTERED:
                return Caller(platform_id, token, form, registered=True)
            if inbound_hash == token_hash and status == RegistrationStatus.CONNECTING:
                return Caller(platform_id, token, form, registered=False)
            if token_a_hash == token_hash and status == RegistrationStatus.INVITED:
                return Caller(platform_id, token, form, registered=False)
    raise unauthorized("unknown credentials token")
