"""Operator API keys (the first from HUB_ADMIN_TOKEN, or generated once on the embedded default; more created,
listed and revoked by operators) and the append-only audit log of operator changes (DESIGN §7)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.admin.models import AuditEntry, OperatorKey, OperatorRole
from hub.platform.clock import Clock, iso_utc
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
                    OperatorKey.key_hash == hash_token(key), OperatorKey.revoked_at.is_(None)
                )
            )
        ).first()
    return None if row is None else Operator(row.id, row.name, row.role)


async def operator_by_id(sessions: async_sessionmaker[AsyncSession], key_id: int) -> Operator | None:
    """The operator of a key that is still valid (a dashboard session names its key; a revoked key ends it)."""
    async with sessions() as session:
        row = (
            await session.execute(
                select(OperatorKey.id, OperatorKey.name, OperatorKey.role).where(
                    OperatorKey.id == key_id, OperatorKey.revoked_at.is_(None)
                )
            )
        ).first()
    return None if row is None else Operator(row.id, row.name, row.role)


# ---- operator key management ------------------------------------------------------------------------------------


class OperatorKeyError(Exception):
    """An operator-side failure with a message meant for a human."""


def operator_key_as_dict(key: OperatorKey) -> dict[str, object]:
    """The JSON shape of an operator key (never its hash)."""
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "created_at": iso_utc(key.created_at),
        "revoked_at": iso_utc(key.revoked_at),
        "active": key.revoked_at is None,
    }


async def create_operator_key(session: AsyncSession, *, name: str, role: str, now: datetime) -> tuple[OperatorKey, str]:
    """A new key with a role; returns the row and the plain key, which is stored only as a hash."""
    name = name.strip()
    if not name or len(name) > 100:
        raise OperatorKeyError("a key name of 1 to 100 characters is required")
    if role not in {r.value for r in OperatorRole}:
        raise OperatorKeyError(f"role must be one of {', '.join(r.value for r in OperatorRole)}")
    plain = new_token()
    key = OperatorKey(name=name, role=role, key_hash=hash_token(plain), created_at=now)
    session.add(key)
    await session.flush()
    return key, plain


async def list_operator_keys(session: AsyncSession) -> list[OperatorKey]:
    return list((await session.scalars(select(OperatorKey).order_by(OperatorKey.id))).all())


async def revoke_operator_key(
    session: AsyncSession, key_id: int, *, now: datetime
) -> tuple[dict[str, object], OperatorKey]:
    """Revoke a key for good; returns its shape before and the revoked row."""
    key = await session.get(OperatorKey, key_id, with_for_update=True)
    if key is None:
        raise OperatorKeyError(f"no operator key with id {key_id}")
    if key.revoked_at is not None:
        raise OperatorKeyError(f"operator key {key_id} is already revoked")
    before = operator_key_as_dict(key)
    key.revoked_at = now
    await session.flush()
    return before, key


# ---- audit log --------------------------------------------------------------------------------------------------

CLI_ACTOR = Operator(id=0, name="cli", role=OperatorRole.ADMIN)


async def record_audit(
    session: AsyncSession,
    *,
    actor: Operator,
    action: str,
    target: str,
    before: object,
    after: object,
    now: datetime,
    request_id: str | None = None,
) -> None:
    """Append one audit row in the caller's transaction (the log only ever grows)."""
    session.add(
        AuditEntry(
            at=now,
            operator_key_id=actor.id or None,
            actor=actor.name,
            action=action,
            target=target,
            before=None if before is None else json.dumps(before, default=str, sort_keys=True),
            after=None if after is None else json.dumps(after, default=str, sort_keys=True),
            request_id=request_id,
        )
    )


async def list_audit(
    session: AsyncSession, *, target: str | None = None, since: datetime | None = None, limit: int = 100
) -> list[AuditEntry]:
    """Newest first; ``target`` matches exactly, or as a prefix when it ends with ``:`` or ``*``."""
    query = select(AuditEntry)
    if target:
        if target.endswith("*"):
            query = query.where(AuditEntry.target.startswith(target[:-1], autoescape=True))
        else:
            query = query.where(AuditEntry.target == target)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    query = query.order_by(AuditEntry.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


def audit_as_dict(entry: AuditEntry) -> dict[str, object]:
    return {
        "id": entry.id,
        "at": iso_utc(entry.at),
        "operator_key_id": entry.operator_key_id,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "before": None if entry.before is None else json.loads(entry.before),
        "after": None if entry.after is None else json.loads(entry.after),
        "request_id": entry.request_id,
    }
