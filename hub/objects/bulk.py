"""Session PUTs and CDRs as they pass the hub on the routing path: checked one by one, written many at a time.

Every Session PUT and CDR POST that the hub routes is stored before it is forwarded (DESIGN §4), and they come at the
rate of the partners' traffic. A request first turns its body into a `SessionPut` or `CdrInsert` (decoding and every
check happen here, in the request, so a bad body is refused on its own). Group commit (`hub.platform.groupcommit`)
then hands all the payloads of one transaction to `put_sessions` or `store_cdrs`: on PostgreSQL one
``INSERT … SELECT FROM unnest(…)`` per kind and transaction instead of a statement per request, which was most of
the database time of a stored write in the routing profile (docs/performance.md). SQLite, the embedded default,
writes them one by one with the same outcomes.

A payload list may name one object twice (two PUTs of one Session in flight together). One PostgreSQL statement must
not touch a row twice, so such lists are written in rounds in which every key appears once, in arrival order.

Each write is a single statement, atomic by itself, and on PostgreSQL it goes to asyncpg directly: unless other work
of its batch opened a transaction first, it commits on its own, which spares the batch its BEGIN and COMMIT round
trips. Either way it is durable before group commit answers the request. When a batch falls back to one transaction
per item after one of its statements committed, that write runs again: harmless, since a PUT replaces and a CDR sent
again is a replay (only the "created" flag then says no).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from hub.objects import merge
from hub.objects.errors import CdrConflictError, InvalidObjectError, invalid_body
from hub.objects.models import CdrRow, SessionRow
from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import WireError, decode
from hub.ocpi.types import ci_key
from hub.platform.keysets import keys_listed

__all__ = ["CdrInsert", "SessionPut", "StoredCdr", "cdr_insert", "put_sessions", "session_put", "store_cdrs"]

T = TypeVar("T")
Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class StoredCdr:
    """Outcome of storing a CDR: its id as sent, whether it is new, and the eMSP it belongs to (upper-cased)."""

    id: str
    created: bool
    emsp: tuple[str, str]


@dataclass(frozen=True, slots=True)
class SessionPut:
    """A checked Session PUT: its key (upper-cased CiStrings, types §16.1), its eMSP, and the partner's bytes."""

    key: Key
    emsp: tuple[str, str]
    last_updated: datetime
    data: bytes


@dataclass(frozen=True, slots=True)
class CdrInsert:
    """A checked CDR: ``id`` as sent, its key and eMSP upper-cased, the columns clearing and paging read, the bytes."""

    id: str
    key: Key
    emsp: tuple[str, str]
    session_id: str | None
    credit: bool
    credit_reference_id: str | None
    last_updated: datetime
    data: bytes


def _decode(body: bytes, type_: type[T]) -> T:
    try:
        return decode(body, type_)
    except WireError as exc:
        raise invalid_body(exc) from None


def _check(field: str, url_value: str, body_value: Any, source: str) -> None:
    # transport_and_format, Client Owned Object Push (Errors): the URL's country_code, party_id and object id must be
    # those of the body; CiStrings, so compared case-insensitively (types §16.1). An absent field is not a mismatch.
    if isinstance(body_value, str) and ci_key(url_value) != ci_key(body_value):
        raise InvalidObjectError(f"{field} {body_value!r} in the body does not match {url_value!r} in {source}")


def session_put(country_code: str, party_id: str, session_id: str, body: bytes) -> SessionPut:
    """Check a Session PUT (mod_sessions §9.2.2.2) against its URL; raises `InvalidObjectError` (2001)."""
    charging = _decode(body, ocpi.Session)
    _check("country_code", country_code, charging.country_code, "the URL")
    _check("party_id", party_id, charging.party_id, "the URL")
    _check("id", session_id, charging.id, "the URL")
    return SessionPut(
        key=(ci_key(country_code), ci_key(party_id), ci_key(session_id)),
        # The eMSP a Session belongs to is the owner of its token (mod_cdrs §10.4.5 CdrToken, 2.2.1).
        emsp=(ci_key(charging.cdr_token.country_code), ci_key(charging.cdr_token.party_id)),
        last_updated=charging.last_updated,
        data=body,
    )


def cdr_insert(country_code: str, party_id: str, body: bytes) -> CdrInsert:
    """Check a CDR sent by ``country_code``/``party_id``; raises `InvalidObjectError` (2001)."""
    cdr = _decode(body, ocpi.CDR)
    # A CDR POST has no owner in its URL (mod_cdrs §10.2.2.2): the owner must be the party that sends it.
    _check("country_code", country_code, cdr.country_code, "the sending party")
    _check("party_id", party_id, cdr.party_id, "the sending party")
    if cdr.credit and cdr.credit_reference_id is None:
        # mod_cdrs §10.3.1: a Credit CDR must name the CDR it credits.
        raise InvalidObjectError("credit_reference_id is required when credit is true")
    return CdrInsert(
        id=cdr.id,
        key=(ci_key(country_code), ci_key(party_id), ci_key(cdr.id)),
        emsp=(ci_key(cdr.cdr_token.country_code), ci_key(cdr.cdr_token.party_id)),
        session_id=None if cdr.session_id is None else ci_key(cdr.session_id),
        credit=bool(cdr.credit),
        credit_reference_id=None if cdr.credit_reference_id is None else ci_key(cdr.credit_reference_id),
        last_updated=cdr.last_updated,
        data=body,
    )


def _rounds(keys: Sequence[Key]) -> list[list[int]]:
    """Indexes of ``keys`` in rounds where each key appears once; a key's occurrences keep their order."""
    rounds: list[list[int]] = []
    seen: dict[Key, int] = {}
    for index, key in enumerate(keys):
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append(index)
    return rounds


# On PostgreSQL the statements go straight to asyncpg (prepared once per connection by its statement cache): built
# through SQLAlchemy, binding the arrays cost more than the statement. Each is one statement, so it is atomic alone.
_SESSION_UPSERT = (
    "INSERT INTO sessions (country_code, party_id, session_id, emsp_country_code, emsp_party_id, data, "
    "last_updated, created_at, updated_at) "
    "SELECT k.cc, k.pid, k.id, k.emsp_cc, k.emsp_pid, k.data, k.last_updated, $8, $8 "
    "FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], $6::bytea[], "
    "$7::timestamptz[]) AS k(cc, pid, id, emsp_cc, emsp_pid, data, last_updated) "
    # xmax = 0 only for a freshly inserted row; an existing row keeps its id and created_at (creation order for
    # paging) and takes the new bytes (mod_sessions §9.2.2.2: PUT replaces, charging periods included).
    "ON CONFLICT (country_code, party_id, session_id) DO UPDATE SET "
    "emsp_country_code = EXCLUDED.emsp_country_code, emsp_party_id = EXCLUDED.emsp_party_id, "
    "data = EXCLUDED.data, last_updated = EXCLUDED.last_updated, updated_at = EXCLUDED.updated_at "
    "RETURNING country_code, party_id, session_id, (xmax = 0)"
)
_CDR_INSERT = (
    "INSERT INTO cdrs (country_code, party_id, cdr_id, emsp_country_code, emsp_party_id, session_id, "
    "credit_reference_id, credit, data, last_updated, created_at) "
    "SELECT k.cc, k.pid, k.id, k.emsp_cc, k.emsp_pid, k.session_id, k.credit_reference_id, k.credit, k.data, "
    "k.last_updated, $11 "
    "FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], $6::varchar[], "
    "$7::varchar[], $8::boolean[], $9::bytea[], $10::timestamptz[]) "
    "AS k(cc, pid, id, emsp_cc, emsp_pid, session_id, credit_reference_id, credit, data, last_updated) "
    # CDRs never change (mod_cdrs §10.1): a key that exists is left alone here and compared afterwards.
    "ON CONFLICT (country_code, party_id, cdr_id) DO NOTHING "
    "RETURNING country_code, party_id, cdr_id"
)
_CDRS_STORED = (
    "SELECT c.country_code, c.party_id, c.cdr_id, c.data, c.emsp_country_code, c.emsp_party_id FROM cdrs c "
    "JOIN unnest($1::varchar[], $2::varchar[], $3::varchar[]) AS k(cc, pid, id) "
    "ON c.country_code = k.cc AND c.party_id = k.pid AND c.cdr_id = k.id"
)


def _arrays(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """The columns of ``rows`` (never empty): one array parameter each, in the order of the statement's unnest."""
    return [list(column) for column in zip(*rows, strict=True)]


async def _driver(session: AsyncSession) -> Any | None:
    """The asyncpg connection under ``session`` on PostgreSQL; None elsewhere."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return None
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def put_sessions(session: AsyncSession, puts: list[SessionPut], now: datetime) -> list[bool | Exception]:
    """Create or replace each Session; answers per PUT whether it created the Session (HTTP 201, hub notes §1.4)."""
    driver = await _driver(session)
    if driver is None:
        connection = await session.connection()
        return [await _put_session_alone(connection, put, now) for put in puts]
    created: list[bool | Exception] = [False] * len(puts)
    for indexes in _rounds([put.key for put in puts]):
        batch = [puts[index] for index in indexes]
        columns = _arrays([(*put.key, *put.emsp, put.data, put.last_updated) for put in batch])
        rows = await driver.fetch(_SESSION_UPSERT, *columns, now)
        fresh = {(row[0], row[1], row[2]): bool(row[3]) for row in rows}
        for index, put in zip(indexes, batch, strict=True):
            created[index] = fresh[put.key]
    return created


async def _put_session_alone(connection: AsyncConnection, put: SessionPut, now: datetime) -> bool:
    # SQLite serialises writers (one at a time per database), so reading before writing is safe here.
    where = (
        (SessionRow.country_code == put.key[0])
        & (SessionRow.party_id == put.key[1])
        & (SessionRow.session_id == put.key[2])
    )
    values = {
        "emsp_country_code": put.emsp[0],
        "emsp_party_id": put.emsp[1],
        "data": put.data,
        "last_updated": put.last_updated,
        "updated_at": now,
    }
    if (await connection.execute(select(SessionRow.id).where(where))).first() is not None:
        await connection.execute(update(SessionRow).where(where).values(values))
        return False
    key = {"country_code": put.key[0], "party_id": put.key[1], "session_id": put.key[2]}
    await connection.execute(insert(SessionRow).values(**key, created_at=now, **values))
    return True


async def store_cdrs(session: AsyncSession, cdrs: list[CdrInsert], now: datetime) -> list[StoredCdr | Exception]:
    """Keep each CDR byte for byte. The same CDR again is an accepted replay that changes nothing; another CDR under a
    stored key is refused with `CdrConflictError` (mod_cdrs §10.1.1), as that CDR's own outcome.
    """
    driver = await _driver(session)
    outcomes: list[StoredCdr | Exception] = [CdrConflictError("not written")] * len(cdrs)
    for indexes in _rounds([cdr.key for cdr in cdrs]):
        batch = [cdrs[index] for index in indexes]
        inserted = await _insert_cdrs(driver, batch, now) if driver else await _insert_cdrs_alone(session, batch, now)
        for index, cdr in zip(indexes, batch, strict=True):
            if cdr.key in inserted:
                outcomes[index] = StoredCdr(cdr.id, True, cdr.emsp)
        others = [index for index, cdr in zip(indexes, batch, strict=True) if cdr.key not in inserted]
        if others:
            keys = [cdrs[index].key for index in others]
            stored = await _stored_cdrs(driver, keys) if driver else await _stored_cdrs_alone(session, keys)
            for index in others:
                outcomes[index] = _replay(cdrs[index], stored[cdrs[index].key])
    return outcomes


async def _insert_cdrs(driver: Any, batch: list[CdrInsert], now: datetime) -> set[Key]:
    columns = _arrays(
        [
            (*cdr.key, *cdr.emsp, cdr.session_id, cdr.credit_reference_id, cdr.credit, cdr.data, cdr.last_updated)
            for cdr in batch
        ]
    )
    rows = await driver.fetch(_CDR_INSERT, *columns, now)
    return {(row[0], row[1], row[2]) for row in rows}


async def _insert_cdrs_alone(session: AsyncSession, batch: list[CdrInsert], now: datetime) -> set[Key]:
    connection = await session.connection()
    inserted: set[Key] = set()
    for cdr in batch:
        statement = (
            sqlite_insert(CdrRow)
            .values(**_cdr_values(cdr, now))
            .on_conflict_do_nothing(index_elements=["country_code", "party_id", "cdr_id"])
        )
        if (await connection.execute(statement)).rowcount == 1:
            inserted.add(cdr.key)
    return inserted


def _cdr_values(cdr: CdrInsert, now: datetime) -> dict[str, Any]:
    return {
        "country_code": cdr.key[0],
        "party_id": cdr.key[1],
        "cdr_id": cdr.key[2],
        "emsp_country_code": cdr.emsp[0],
        "emsp_party_id": cdr.emsp[1],
        "session_id": cdr.session_id,
        "credit_reference_id": cdr.credit_reference_id,
        "credit": cdr.credit,
        "data": cdr.data,
        "last_updated": cdr.last_updated,
        "created_at": now,
    }


async def _stored_cdrs(driver: Any, keys: list[Key]) -> dict[Key, tuple[bytes, tuple[str, str]]]:
    rows = await driver.fetch(_CDRS_STORED, *_arrays(keys))
    return {(row[0], row[1], row[2]): (row[3], (row[4], row[5])) for row in rows}


async def _stored_cdrs_alone(session: AsyncSession, keys: list[Key]) -> dict[Key, tuple[bytes, tuple[str, str]]]:
    columns = (CdrRow.country_code, CdrRow.party_id, CdrRow.cdr_id)
    stored: dict[Key, tuple[bytes, tuple[str, str]]] = {}
    for condition in keys_listed(columns, keys):
        rows = await session.execute(
            select(*columns, CdrRow.data, CdrRow.emsp_country_code, CdrRow.emsp_party_id).where(condition)
        )
        for cc, pid, cdr_id, data, emsp_cc, emsp_pid in rows:
            stored[(cc, pid, cdr_id)] = (data, (emsp_cc, emsp_pid))
    return stored


def _replay(cdr: CdrInsert, stored: tuple[bytes, tuple[str, str]]) -> StoredCdr | Exception:
    data, emsp = stored
    # A replay may differ only in formatting (whitespace, key order, 1.5 vs 1.50, null vs absent).
    if data == cdr.data or merge.normalised(merge.load_object(data)) == merge.normalised(merge.load_object(cdr.data)):
        return StoredCdr(cdr.id, False, emsp)
    return CdrConflictError(
        f"CDR {cdr.id} of {cdr.key[0]}/{cdr.key[1]} already exists with different content; "
        "send a credit CDR with a new id to correct it (mod_cdrs §10.1.1)"
    )
