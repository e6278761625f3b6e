"""Operator API keys: the first key comes from HUB_ADMIN_TOKEN, or is generated once on the embedded default."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.admin.models import OperatorKey, OperatorRole
from hub.platform.clock import Clock
from hub.platform.crypto import hash_token, new_token


@dataclass(frozen=True, slots=True)
class Operator:
    id: int
    name: str
    role: str


async def ensure_admin_key(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, admin_token: str | None
) -> str | None:
    """Make sure an admin key exists. Returns a newly generated key (to print once), else None."""
    async with sessions.begin() as session:
        if admin_token is not None:
            key_hash = hash_token(admin_token)
            if await session.scalar(select(OperatorKey.id).where(OperatorKey.key_hash == key_hash)) is None:
                session.add(
                    OperatorKey(
                        name="HUB_ADMIN_TOKEN", role=OperatorRole.ADMIN, key_hash=key_hash, created_at=clock.now()
                    )
                )
            generated = None
        elif await session.scalar(select(func.count()).select_from(OperatorKey)):
            generated = None
        else:
            generated = new_token()
            session.add(
                OperatorKey(
                    name="generated", role=OperatorRole.ADMIN, key_hash=hash_token(generated), created_at=clock.now()
                )
            )
    return generated


async def ensure_admin_key_once(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, admin_token: str | None
) -> str | None:
    # Several server processes start at once; the unique hash index lets exactly one insert win.
    try:
        return await ensure_admin_key(sessions, clock, admin_token)
    except IntegrityError:
        return None


async def operator_for_key(sessions: async_sessionmaker[AsyncSession], key: str) -> Operator | None:
    async with sessions() as session:
        row = (
            await session.execute(
                select(OperatorKey.id, OperatorKey.name, OperatorKey.role).where(
                    OperatorKey.key_hash == hash_token(key)
                )
            )
        ).first()
    return None if row is None else Operator(row.id, row.name, row.role)
