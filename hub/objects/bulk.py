"""Session PUTs and CDRs as they pass the hub on the routing path: checked one by one, written many at a time.

Every Session PUT and CDR POST that the hub routes is stored before it is forwarded (DESIGN §4), and they come at the
rate of the partners' traffic. A request first turns its body into a `SessionPut` or `CdrInsert` (decoding and every
check happen here, in the request, so a bad body is refused on its own). Group commit (`hub.platform.groupcommit`)
then hands all the payloads of one transaction to `put_sessions` or `store_cdrs`: on PostgreSQL one
``INSERT … SELECT FROM unnest(…)`` per kind and transaction instead of a statement per request, which was most of
the database time of a stored write in the routing profile (docs/performance.md). SQLite, the embedded default,
writes them one by one through the store's own upsert and insert (`ObjectStore.put_sessions`, `store_cdrs`), with
the same outcomes.

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
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from hub.objects import merge
from hub.objects.checks import check_id, check_owner, decode_body
from hub.objects.errors import CdrConflictError, InvalidObjectError
from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.types import ci_key
from hub.platform.db import asyncpg_connection

__all__ = [
    "KEY_COLUMNS",
    "CdrInsert",
    "SessionPut",
    "StoredCdr",
    "cdr_insert",
    "cdr_values",
    "driver",
    "put_sessions",
    "replay",
    "session_put",
    "store_cdrs",
]

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


def session_put(country_code: str, party_id: str, session_id: str, body: bytes) -> SessionPut:
    """Check a Session PUT (mod_sessions §9.2.2.2) against its URL; raises `InvalidObjectError` (2001)."""
    charging = decode_body(body, ocpi.Session)
    check_owner(country_code, party_id, charging)
    check_id("id", session_id, charging.id)
    return SessionPut(
        key=(ci_key(country_code), ci_key(party_id), ci_key(session_id)),
        # The eMSP a Session belongs to is the owner of its token (mod_cdrs §10.4.5 CdrToken, 2.2.1).
        emsp=(ci_key(charging.cdr_token.country_code), ci_key(charging.cdr_token.party_id)),
        last_updated=charging.last_updated,
        data=body,
    )


def cdr_insert(country_code: str, party_id: str, body: bytes) -> CdrInsert:
    """Check a CDR sent by ``country_code``/``party_id``; raises `InvalidObjectError` (2001)."""
    cdr = decode_body(body, ocpi.CDR)
    # A CDR POST has no owner in its URL (mod_cdrs §10.2.2.2): the owner must be the party that sends it.
    check_owner(country_code, party_id, cdr, source="the sending party")
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


#: The key columns of each table, in the order of `SessionPut.key` and `CdrInsert.key`.
KEY_COLUMNS: Final = {
    "sessions": ("country_code", "party_id", "session_id"),
    "cdrs": ("country_code", "party_id", "cdr_id"),
}


async def driver(session: AsyncSession | Any) -> Any | None:
    """The asyncpg connection for the statements here: the one group commit hands over for a batch of bulk writes
    (`hub.platform.groupcommit`), else the one under ``session`` on PostgreSQL; None elsewhere (SQLite)."""
    if not isinstance(session, AsyncSession):
        return session
    return await asyncpg_connection(await session.connection())


async def put_sessions(driver: Any, puts: list[SessionPut], now: datetime) -> list[bool | Exception]:
    """Create or replace each Session; answers per PUT whether it created the Session (HTTP 201, hub notes §1.4)."""
    created: list[bool | Exception] = [False] * len(puts)
    for indexes in _rounds([put.key for put in puts]):
        batch = [puts[index] for index in indexes]
        columns = _arrays([(*put.key, *put.emsp, put.data, put.last_updated) for put in batch])
        rows = await driver.fetch(_SESSION_UPSERT, *columns, now)
        fresh = {(row[0], row[1], row[2]): bool(row[3]) for row in rows}
        for index, put in zip(indexes, batch, strict=True):
            created[index] = fresh[put.key]
    return created


async def store_cdrs(driver: Any, cdrs: list[CdrInsert], now: datetime) -> list[StoredCdr | Exception]:
    """Keep each CDR byte for byte. The same CDR again is an accepted replay that changes nothing; another CDR under a
    stored key is refused with `CdrConflictError` (mod_cdrs §10.1.1), as that CDR's own outcome.
    """
    outcomes: list[StoredCdr | Exception] = [CdrConflictError("not written")] * len(cdrs)
    for indexes in _rounds([cdr.key for cdr in cdrs]):
        batch = [cdrs[index] for index in indexes]
        columns = _arrays(
            [
                (*cdr.key, *cdr.emsp, cdr.session_id, cdr.credit_reference_id, cdr.credit, cdr.data, cdr.last_updated)
                for cdr in batch
            ]
        )
        inserted = {(row[0], row[1], row[2]) for row in await driver.fetch(_CDR_INSERT, *columns, now)}
        for index, cdr in zip(indexes, batch, strict=True):
            if cdr.key in inserted:
                outcomes[index] = StoredCdr(cdr.id, True, cdr.emsp)
        others = [index for index, cdr in zip(indexes, batch, strict=True) if cdr.key not in inserted]
        if others:
            rows = await driver.fetch(_CDRS_STORED, *_arrays([cdrs[index].key for index in others]))
            stored = {(row[0], row[1], row[2]): (row[3], (row[4], row[5])) for row in rows}
            for index in others:
                outcomes[index] = replay(cdrs[index], *stored[cdrs[index].key])
    return outcomes


def cdr_values(cdr: CdrInsert, now: datetime) -> dict[str, Any]:
    """The ``cdrs`` row of ``cdr``, as the store's one-by-one insert on SQLite writes it."""
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


def replay(cdr: CdrInsert, data: bytes, emsp: tuple[str, str]) -> StoredCdr | Exception:
    """``cdr`` against the stored CDR of its key (``data``, ``emsp``): an accepted replay, or its `CdrConflictError`."""
    # A replay may differ only in formatting (whitespace, key order, 1.5 vs 1.50, null vs absent).
    if data == cdr.data or merge.normalised(merge.load_object(data)) == merge.normalised(merge.load_object(cdr.data)):
        return StoredCdr(cdr.id, False, emsp)
    return CdrConflictError(
        f"CDR {cdr.id} of {cdr.key[0]}/{cdr.key[1]} already exists with different content; "
        "send a credit CDR with a new id to correct it (mod_cdrs §10.1.1)"
    )
