"""The outbox: pushes the hub owes its partners, written in the same transaction as the change they announce.

DESIGN §6: a broadcast push or a HubClientInfo change writes one row per receiver here, in the transaction that
stores the object; the broadcaster gets its answer before the fan-out. The relay (`routing.relay`) hands due rows to
the job queue and `routing.delivery` sends them, so an accepted push survives a killed worker, a PostgreSQL restart
and a flushed Redis: the row is the only state that counts.

Per (receiver, ``object_key``) rows are delivered in insertion order, one at a time; ``object_key`` is the ordering
and coalescing unit, so pushes of sub-objects (an EVSE PATCH) must use the key of the object they belong to
(``locations/NL/CPA/LOC1``) when their order relative to it matters. A full PUT enqueued with ``coalesce=True``
supersedes the older rows of its unit that have not been sent (pending) or were given up (failed): the receiver
only needs the newest full object, and re-delivering an older failed one after it would roll the receiver back.

Process-local wake-up: a composition root calls `install_wakeup` on its session factory; every session it makes then
calls the given callback after a commit that enqueued or re-queued messages, so the relay starts at once instead of
at its next poll.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    and_,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute, Mapped, Session, aliased, mapped_column

from hub.platform.clock import iso_utc
from hub.platform.db import Base, UtcDateTime

__all__ = [
    "FINAL_STATUSES",
    "OPEN_STATUSES",
    "OutboxMessage",
    "OutboxStatus",
    "Push",
    "available_condition",
    "count_by_status",
    "due_condition",
    "enqueue",
    "enqueue_many",
    "get_message",
    "install_wakeup",
    "is_available",
    "is_open",
    "list_messages",
    "purge",
    "redeliver",
]


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its turn or, after a transient failure, for next_attempt_at
    DELIVERING = "delivering"  # an attempt holds the lease until locked_until; an expired lease makes it due again
    DELIVERED = "delivered"  # the receiver answered HTTP 2xx with OCPI 1xxx
    FAILED = "failed"  # refused (OCPI 2xxx/3xxx) or still unreachable after the attempts; visible, re-deliverable
    SUPERSEDED = "superseded"  # a newer full PUT of the same object to the same receiver replaced it before delivery


#: Rows that still block later rows of their (receiver, object_key) unit.
OPEN_STATUSES = (OutboxStatus.PENDING, OutboxStatus.DELIVERING)
FINAL_STATUSES = (OutboxStatus.DELIVERED, OutboxStatus.FAILED, OutboxStatus.SUPERSEDED)


def is_open(status: ColumnElement[str] | InstrumentedAttribute[str]) -> ColumnElement[bool]:
    """``status`` is pending or delivering (`OPEN_STATUSES`)."""
    return status.in_(OPEN_STATUSES)


# Headers the sender sets itself on every attempt: a stored copy would be stale (request id, token) or wrong.
_SENDER_HEADERS = frozenset({"x-request-id", "authorization", "content-type", "content-length", "host"})


class OutboxMessage(Base):
    """One push to one receiver platform (DESIGN §6)."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        # The head-of-line check and the coalescing update look up one unit, oldest first.
        Index("ix_outbox_messages_unit", "receiver_platform_id", "object_key", "id"),
        # The relay scans open rows by due time.
        Index("ix_outbox_messages_status_due", "status", "next_attempt_at"),
    )

    # 64-bit: a fan-out writes one row per receiver, which outgrows 2^31 on a busy hub (INTEGER on SQLite, where
    # only that type auto-increments).
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    receiver_platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # "fanout", "clientinfo", …: what produced it, for operators
    method: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(Text)  # absolute URL at the receiver
    body: Mapped[bytes | None] = mapped_column(LargeBinary)  # forwarded byte for byte (DESIGN §5)
    headers: Mapped[dict[str, str]] = mapped_column(JSON)  # OCPI-from/to-*, X-Correlation-ID (hub notes §1.8-1.9)
    object_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)  # attempts started; also the fencing token of the current lease
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


_WAKE_KEY = "routing.outbox.wake"
_ARMED_KEY = "routing.outbox.wake_armed"


def install_wakeup(sessions: async_sessionmaker[AsyncSession], callback: Callable[[], None]) -> None:
    """Have sessions from ``sessions`` call ``callback`` after each commit that enqueued or re-queued messages.

    ``callback`` runs on the event loop right after the commit and must not block (set an event, start a task).
    """
    info = dict(sessions.kw.get("info") or {})
    info[_WAKE_KEY] = callback
    sessions.configure(info=info)


def _wake_after_commit(session: AsyncSession) -> None:
    callback = session.info.get(_WAKE_KEY)
    if callback is None or session.info.get(_ARMED_KEY):
        return
    session.info[_ARMED_KEY] = True

    def fire(_session: Session) -> None:
        session.info.pop(_ARMED_KEY, None)
        callback()

    # After the commit, never before: a relay woken earlier would not see the rows yet (house style §2.5).
    event.listen(session.sync_session, "after_commit", fire, once=True)


def _clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in _SENDER_HEADERS}


async def enqueue(
    session: AsyncSession,
    *,
    receiver_platform_id: int,
    kind: str,
    method: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    object_key: str,
    coalesce: bool,
    now: datetime | None = None,
) -> int:
    """Add a push to the caller's transaction (never commits) and return its id.

    ``coalesce=True`` is for full-object PUTs: older rows of the same (receiver, object_key) that are pending or
    failed become superseded. A row being delivered right now is left alone and this one waits behind it.
    """
    now = now or datetime.now(UTC)
    if coalesce:
        await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.receiver_platform_id == receiver_platform_id,
                OutboxMessage.object_key == object_key,
                OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.FAILED)),
            )
            .values(status=OutboxStatus.SUPERSEDED, locked_until=None)
            .execution_options(synchronize_session=False)
        )
    result = await session.execute(
        insert(OutboxMessage)
        .values(
            receiver_platform_id=receiver_platform_id,
            kind=kind,
            method=method.upper(),
            url=url,
            body=body,
            headers=_clean_headers(headers),
            object_key=object_key,
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .returning(OutboxMessage.id)
    )
    outbox_id: int = result.scalar_one()
    _wake_after_commit(session)
    return outbox_id


@dataclass(frozen=True, slots=True)
class Push:
    """One receiver's copy of a push that goes to many (a broadcast's fan-out): see `enqueue_many`."""

    receiver_platform_id: int
    url: str
    headers: Mapping[str, str]
    object_key: str


async def enqueue_many(
    session: AsyncSession,
    pushes: Sequence[Push],
    *,
    kind: str,
    method: str,
    body: bytes | None,
    coalesce: bool,
    now: datetime | None = None,
) -> list[int]:
    """`enqueue` for many receivers of the same content, in two statements instead of one or two per receiver.

    Returns the ids in the order of ``pushes``. Same rules as `enqueue`: the caller's transaction, and with
    ``coalesce=True`` the pending and failed rows of each (receiver, object_key) become superseded first.
    """
    if not pushes:
        return []
    now = now or datetime.now(UTC)
    if coalesce:
        await session.execute(
            update(OutboxMessage)
            .where(
                tuple_(OutboxMessage.receiver_platform_id, OutboxMessage.object_key).in_(
                    [(push.receiver_platform_id, push.object_key) for push in pushes]
                ),
                OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.FAILED)),
            )
            .values(status=OutboxStatus.SUPERSEDED, locked_until=None)
            .execution_options(synchronize_session=False)
        )
    method = method.upper()
    result = await session.execute(
        insert(OutboxMessage).returning(OutboxMessage.id, sort_by_parameter_order=True),
        [
            {
                "receiver_platform_id": push.receiver_platform_id,
                "kind": kind,
                "method": method,
                "url": push.url,
                "body": body,
                "headers": _clean_headers(push.headers),
                "object_key": push.object_key,
                "status": OutboxStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for push in pushes
        ],
    )
    ids = list(result.scalars())
    _wake_after_commit(session)
    return ids


async def redeliver(
    session: AsyncSession,
    *,
    ids: Sequence[int] | None = None,
    platform_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Put failed messages back in line (attempts reset); returns how many. No filter means every failed message.

    Runs in the caller's transaction. The last error stays on the row until the next attempt replaces it.
    """
    now = now or datetime.now(UTC)
    conditions: list[ColumnElement[bool]] = [OutboxMessage.status == OutboxStatus.FAILED]
    if ids is not None:
        conditions.append(OutboxMessage.id.in_(list(ids)))
    if platform_id is not None:
        conditions.append(OutboxMessage.receiver_platform_id == platform_id)
    result = await session.execute(
        update(OutboxMessage)
        .where(*conditions)
        .values(status=OutboxStatus.PENDING, attempts=0, next_attempt_at=now, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of an UPDATE
    if count:
        _wake_after_commit(session)
    return count


def available_condition(now: datetime) -> ColumnElement[bool]:
    """Rows that nobody holds and whose time has come: open, due, not leased (whatever is ahead of them in line).

    A ``delivering`` row whose lease expired counts: its worker died or lost the database mid-attempt.
    `is_available` is the same test in Python; keep the two together.
    """
    return and_(
        or_(
            OutboxMessage.status == OutboxStatus.PENDING,
            and_(OutboxMessage.status == OutboxStatus.DELIVERING, OutboxMessage.locked_until < now),
        ),
        OutboxMessage.next_attempt_at <= now,
        or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
    )


def is_available(status: str, next_attempt_at: datetime, locked_until: datetime | None, now: datetime) -> bool:
    """`available_condition` for a row already read."""
    unleased = locked_until is None or locked_until < now
    if status == OutboxStatus.DELIVERING:
        return locked_until is not None and unleased and next_attempt_at <= now
    return status == OutboxStatus.PENDING and unleased and next_attempt_at <= now


def due_condition(now: datetime) -> ColumnElement[bool]:
    """Rows an attempt may start on now: available and first in line of their unit (DESIGN §6 order)."""
    older = aliased(OutboxMessage)
    return and_(
        available_condition(now),
        ~exists().where(
            older.receiver_platform_id == OutboxMessage.receiver_platform_id,
            older.object_key == OutboxMessage.object_key,
            older.id < OutboxMessage.id,
            is_open(older.status),
        ),
    )


# ---- reading, for operators (admin API, CLI, dashboard) -------------------------------------------------------------


async def get_message(session: AsyncSession, outbox_id: int) -> OutboxMessage | None:
    return await session.get(OutboxMessage, outbox_id)


async def list_messages(
    session: AsyncSession,
    *,
    status: str | Iterable[str] | None = None,
    platform_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[OutboxMessage]:
    """Newest first."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit).offset(offset)
    if status is not None:
        query = query.where(OutboxMessage.status.in_([status] if isinstance(status, str) else list(status)))
    if platform_id is not None:
        query = query.where(OutboxMessage.receiver_platform_id == platform_id)
    return list(await session.scalars(query))


async def count_by_status(session: AsyncSession, *, platform_id: int | None = None) -> dict[str, int]:
    query = select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    if platform_id is not None:
        query = query.where(OutboxMessage.receiver_platform_id == platform_id)
    counts: dict[str, int] = {status.value: 0 for status in OutboxStatus}
    for status, count in (await session.execute(query)).tuples():
        counts[status] = count
    return counts


async def purge(
    session: AsyncSession,
    *,
    before: datetime,
    statuses: Sequence[str] = (OutboxStatus.DELIVERED, OutboxStatus.SUPERSEDED),
) -> int:
    """Delete finished rows created before ``before`` (retention); failed rows stay unless asked for."""
    result: Any = await session.execute(
        delete(OutboxMessage)
        .where(OutboxMessage.status.in_(list(statuses)), OutboxMessage.created_at < before)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)


def outbox_as_dict(message: OutboxMessage) -> dict[str, object]:
    """The operator's view of one push (CLI, admin API): everything but the body."""
    return {
        "id": message.id,
        "receiver_platform_id": message.receiver_platform_id,
        "kind": message.kind,
        "method": message.method,
        "url": message.url,
        "object_key": message.object_key,
        "status": message.status,
        "attempts": message.attempts,
        "last_error": message.last_error,
        "last_http_status": message.last_http_status,
        "created_at": iso_utc(message.created_at),
        "delivered_at": iso_utc(message.delivered_at),
    }
