"""`ObjectStore`: PUT, PATCH, DELETE, GET and "GET All" pages over the stored OCPI objects.

Every method takes the caller's `AsyncSession` first and never commits, so the caller can write its outbox rows in
the same transaction (DESIGN §6). Bodies are validated with the wire Structs (PUT → the full object, PATCH → its
``…Patch`` Struct), then stored as the partner's bytes (PUT) or as the merge of the stored object and the PATCH
(`hub.objects.merge`). Rows that are read to be changed are locked (``FOR UPDATE`` on PostgreSQL; SQLite serialises
writers anyway), and a new row is inserted with ``ON CONFLICT DO NOTHING`` so two concurrent first PUTs of one object
end as one create and one replace instead of an integrity error.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar, get_args

from sqlalchemy import (
    ColumnElement,
    TextClause,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from hub.objects import bulk, merge
from hub.objects.bulk import CdrInsert, SessionPut, StoredCdr, cdr_insert, session_put
from hub.objects.checks import check_id, check_owner, decode_body
from hub.objects.errors import (
    InvalidObjectError,
    UnknownLocationError,
    UnknownObjectError,
)
from hub.objects.models import (
    CdrRow,
    LocationAudienceRow,
    LocationRow,
    SessionRow,
    TariffRow,
    TariffVersionRow,
    TokenRow,
)
from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import WireError, decode
from hub.ocpi.types import ci_key, parse_datetime
from hub.platform.clock import Clock

__all__ = [
    "Change",
    "Module",
    "ObjectStore",
    "Page",
    "StoredCdr",
    "TariffVersion",
    "Viewer",
]

T = TypeVar("T")

#: The modules whose objects the hub stores and serves as "GET All" (hub notes §1.9 item 4).
Module = Literal["locations", "tariffs", "tokens", "sessions", "cdrs"]
_MODULES: frozenset[str] = frozenset(get_args(Module))


@dataclass(frozen=True, slots=True)
class Change:
    """Outcome of a PUT or PATCH: ``created`` means answer HTTP 201 (PUT of a new client owned object, hub notes §1.4).

    ``data`` is the addressed object (Location, EVSE, Connector, Tariff, Token or Session) as now stored, and
    ``last_updated`` its own ``last_updated``.
    """

    created: bool
    data: bytes
    last_updated: datetime


@dataclass(frozen=True, slots=True)
class TariffVersion:
    """One entry of a Tariff's history; ``data`` is None for a DELETE."""

    data: bytes | None
    last_updated: datetime
    received_at: datetime
    deleted: bool


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who asks for a "GET All" page.

    ``parties`` are the caller's (country_code, party_id, role); ``permitted_owners`` the (country_code, party_id)
    whose objects the roaming policy lets it see, None meaning every owner (``HUB_ROAMING_POLICY=open``).
    """

    parties: frozenset[tuple[str, str, str]]
    permitted_owners: frozenset[tuple[str, str]] | None = None

    def party_keys(self) -> list[tuple[str, str]]:
        return sorted({(ci_key(cc), ci_key(pid)) for cc, pid, _role in self.parties})


@dataclass(frozen=True, slots=True)
class Page:
    """One page of raw objects, oldest first, and how many match the filters (``X-Total-Count``, transport paging)."""

    items: list[bytes]
    total: int
    # The creation-order id of the last item: lets the next page seek past it instead of counting an OFFSET.
    last_id: int | None = None


def _owner_key(country_code: str, party_id: str) -> dict[str, str]:
    return {"country_code": ci_key(country_code), "party_id": ci_key(party_id)}


def _where(model: Any, key: dict[str, str]) -> list[ColumnElement[bool]]:
    return [getattr(model, name) == value for name, value in key.items()]


def _in_pairs(left: Any, right: Any, pairs: Sequence[tuple[str, str]]) -> ColumnElement[bool]:
    if not pairs:
        return false()
    return tuple_(left, right).in_(pairs)


def _revalidate(data: bytes, type_: type[T], what: str) -> T:
    try:
        return decode(data, type_)
    except WireError as exc:
        raise InvalidObjectError(f"the PATCH would leave an invalid {what}: {exc.message}") from None


def _typed(model: Any, names: tuple[str, ...], sql: str) -> TextClause:
    # Bind each parameter with its column's type, so UtcDateTime and friends convert values as the ORM would.
    columns = model.__table__.c
    return text(sql).bindparams(*(bindparam(name, type_=columns[name].type) for name in names))


@functools.cache
def _pg_upsert_statement(model: Any, keys: tuple[str, ...], columns: tuple[str, ...]) -> TextClause:
    """INSERT … ON CONFLICT DO UPDATE as fixed text, built once per shape.

    SQLAlchemy does not cache the compiled form of its ON CONFLICT construct, and compiling it cost more than running
    it (routing profile, docs/performance.md).
    """
    table = model.__tablename__
    names = (*keys, *columns, "created_at", "updated_at")
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in (*columns, "updated_at"))
    return _typed(
        model,
        names,
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)}) "  # noqa: S608 - names are ours
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates} RETURNING id, (xmax = 0)",
    )


@functools.cache
def _insert_new_statement(model: Any, columns: tuple[str, ...], keys: tuple[str, ...]) -> TextClause:
    # Both PostgreSQL and SQLite (3.35+) speak INSERT … ON CONFLICT DO NOTHING RETURNING.
    table = model.__tablename__
    return _typed(
        model,
        columns,
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)}) "  # noqa: S608
        f"ON CONFLICT ({', '.join(keys)}) DO NOTHING RETURNING id",
    )


class ObjectStore:
    """The stored objects of every module; stateless apart from the clock, so one instance serves the process."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    # ---- row helpers -----------------------------------------------------------------------------------------------

    async def _insert_new(
        self, session: AsyncSession, model: Any, values: dict[str, Any], keys: list[str]
    ) -> int | None:
        """Insert a row unless its key exists; return the new id, or None when another row holds the key."""
        # Core on the session's connection with a statement built once per shape: the ORM's bulk-insert machinery
        # and recompiling ON CONFLICT each time cost more than the statement itself (docs/performance.md).
        connection = await session.connection()
        if connection.dialect.name not in ("postgresql", "sqlite"):  # pragma: no cover - DESIGN §2
            raise NotImplementedError(f"unsupported database dialect {connection.dialect.name}")
        statement = _insert_new_statement(model, tuple(values), tuple(keys))
        row_id: int | None = (await connection.execute(statement, values)).scalar_one_or_none()
        return row_id

    async def _upsert(
        self, session: AsyncSession, model: Any, key: dict[str, str], values: dict[str, Any]
    ) -> tuple[bool, int]:
        """Replace the row with ``key`` or create it; return (created, row id). Creation order stays the first PUT's."""
        now = self._clock.now()
        connection = await session.connection()
        if connection.dialect.name == "postgresql":
            # One statement instead of lock, insert, update: Sessions arrive on the routing hot path. The row keeps
            # its id and created_at (creation order for paging); xmax = 0 only for a freshly inserted row.
            params = {**key, **values, "created_at": now, "updated_at": now}
            upsert = _pg_upsert_statement(model, tuple(key), tuple(values))
            new_id, created = (await connection.execute(upsert, params)).one()
            return bool(created), int(new_id)
        row_id: int | None = await session.scalar(select(model.id).where(*_where(model, key)).with_for_update())
        if row_id is None:
            row_id = await self._insert_new(
                session, model, {**key, **values, "created_at": now, "updated_at": now}, list(key)
            )
            if row_id is not None:
                return True, row_id
            # A concurrent PUT created it between our read and our insert: ours replaces it.
            row_id = await session.scalar(select(model.id).where(*_where(model, key)).with_for_update())
            if row_id is None:  # pragma: no cover - only if that row was deleted again in between
                raise RuntimeError("the object was deleted while it was being replaced; retry the request")
        await session.execute(update(model).where(model.id == row_id).values(**values, updated_at=now))
        return False, row_id

    async def _get_data(self, session: AsyncSession, model: Any, key: dict[str, str]) -> bytes | None:
        data: bytes | None = await session.scalar(select(model.data).where(*_where(model, key)))
        return data

    # ---- Locations (mod_locations §8) --------------------------------------------------------------------------------

    def _location_key(self, country_code: str, party_id: str, location_id: str) -> dict[str, str]:
        return {**_owner_key(country_code, party_id), "location_id": ci_key(location_id)}

    async def _set_audience(
        self, session: AsyncSession, row_id: int, entries: Iterable[ocpi.PublishTokenType], *, fresh: bool
    ) -> None:
        if not fresh:
            await session.execute(delete(LocationAudienceRow).where(LocationAudienceRow.location_row_id == row_id))
        rows = [
            {
                "location_row_id": row_id,
                "uid": None if entry.uid is None else ci_key(entry.uid),
                "type": None if entry.type is None else str(entry.type),
                "visual_number": entry.visual_number,
                "issuer": entry.issuer,
                "group_id": None if entry.group_id is None else ci_key(entry.group_id),
            }
            for entry in entries
            # mod_locations §8.4.20: uid, visual_number or group_id must be set. An entry without any of them would
            # match every token, so it is not taken as "show to everyone".
            if entry.uid is not None or entry.visual_number is not None or entry.group_id is not None
        ]
        if rows:
            await session.execute(insert(LocationAudienceRow), rows)

    async def _lock_location(
        self, session: AsyncSession, country_code: str, party_id: str, location_id: str
    ) -> tuple[int, merge.JsonObject]:
        key = self._location_key(country_code, party_id, location_id)
        row = (
            await session.execute(
                select(LocationRow.id, LocationRow.data).where(*_where(LocationRow, key)).with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise UnknownLocationError(f"unknown location {country_code}/{party_id}/{location_id}")
        return row.id, merge.load_object(row.data)

    async def _save_location(self, session: AsyncSession, row_id: int, location: merge.JsonObject) -> None:
        await session.execute(
            update(LocationRow)
            .where(LocationRow.id == row_id)
            .values(
                data=merge.dump(location),
                last_updated=parse_datetime(location["last_updated"]),
                updated_at=self._clock.now(),
            )
        )

    @staticmethod
    def _evse_of(location: merge.JsonObject, location_id: str, evse_uid: str) -> merge.JsonObject:
        evse = merge.find_evse(location, evse_uid)
        if evse is None:
            raise UnknownLocationError(f"unknown EVSE {evse_uid} of location {location_id}")
        return evse

    async def put_location(
        self, session: AsyncSession, country_code: str, party_id: str, location_id: str, body: bytes
    ) -> Change:
        """Create or replace a whole Location, EVSEs included (mod_locations §8.2.2.2); kept byte for byte."""
        location = decode_body(body, ocpi.Location)
        check_owner(country_code, party_id, location)
        check_id("id", location_id, location.id)
        created, row_id = await self._upsert(
            session,
            LocationRow,
            self._location_key(country_code, party_id, location_id),
            {"data": body, "publish": location.publish, "last_updated": location.last_updated},
        )
        await self._set_audience(session, row_id, location.publish_allowed_to or (), fresh=created)
        return Change(created, body, location.last_updated)

    async def put_evse(  # noqa: PLR0917 - parameters follow the OCPI URL path
        self, session: AsyncSession, country_code: str, party_id: str, location_id: str, evse_uid: str, body: bytes
    ) -> Change:
        """Create or replace one EVSE of a stored Location; the Location's last_updated follows (§8.2.2.2)."""
        evse = decode_body(body, ocpi.EVSE)
        check_id("uid", evse_uid, evse.uid)
        row_id, location = await self._lock_location(session, country_code, party_id, location_id)
        created = merge.put_evse(location, merge.load_object(body))
        await self._save_location(session, row_id, location)
        return Change(created, body, evse.last_updated)

    async def put_connector(  # noqa: PLR0917 - parameters follow the OCPI URL path
        self,
        session: AsyncSession,
        country_code: str,
        party_id: str,
        location_id: str,
        evse_uid: str,
        connector_id: str,
        body: bytes,
    ) -> Change:
        """Create or replace one Connector of a stored EVSE; the EVSE's and Location's last_updated follow."""
        connector = decode_body(body, ocpi.Connector)
        check_id("id", connector_id, connector.id)
        row_id, location = await self._lock_location(session, country_code, party_id, location_id)
        evse = self._evse_of(location, location_id, evse_uid)
        created = merge.put_connector(location, evse, merge.load_object(body))
        await self._save_location(session, row_id, location)
        return Change(created, body, connector.last_updated)

    async def patch_location(
        self, session: AsyncSession, country_code: str, party_id: str, location_id: str, body: bytes
    ) -> Change:
        """Merge a Location PATCH (mod_locations §8.2.2.3); ``evses`` in it replaces the whole list."""
        patch = decode_body(body, ocpi.LocationPatch)
        check_owner(country_code, party_id, patch)
        check_id("id", location_id, patch.id)
        row_id, stored = await self._lock_location(session, country_code, party_id, location_id)
        merged = merge.merge_patch(stored, merge.load_object(body))
        data = merge.dump(merged)
        location = _revalidate(data, ocpi.Location, "Location")
        await session.execute(
            update(LocationRow)
            .where(LocationRow.id == row_id)
            .values(
                data=data,
                publish=location.publish,
                last_updated=location.last_updated,
                updated_at=self._clock.now(),
            )
        )
        await self._set_audience(session, row_id, location.publish_allowed_to or (), fresh=False)
        return Change(False, data, location.last_updated)

    async def patch_evse(  # noqa: PLR0917 - parameters follow the OCPI URL path
        self, session: AsyncSession, country_code: str, party_id: str, location_id: str, evse_uid: str, body: bytes
    ) -> Change:
        """Merge an EVSE PATCH, e.g. a status change; status REMOVED keeps the EVSE (mod_locations §8.1)."""
        patch = decode_body(body, ocpi.EvsePatch)
        check_id("uid", evse_uid, patch.uid)
        row_id, location = await self._lock_location(session, country_code, party_id, location_id)
        stored = self._evse_of(location, location_id, evse_uid)
        merged = merge.merge_patch(stored, merge.load_object(body))
        data = merge.dump(merged)
        evse = _revalidate(data, ocpi.EVSE, "EVSE")
        merge.put_evse(location, merged)
        await self._save_location(session, row_id, location)
        return Change(False, data, evse.last_updated)

    async def patch_connector(  # noqa: PLR0917 - parameters follow the OCPI URL path
        self,
        session: AsyncSession,
        country_code: str,
        party_id: str,
        location_id: str,
        evse_uid: str,
        connector_id: str,
        body: bytes,
    ) -> Change:
        """Merge a Connector PATCH, e.g. new ``tariff_ids``; the parents' last_updated follow (§8.2.2.3)."""
        patch = decode_body(body, ocpi.ConnectorPatch)
        check_id("id", connector_id, patch.id)
        row_id, location = await self._lock_location(session, country_code, party_id, location_id)
        evse = self._evse_of(location, location_id, evse_uid)
        stored = merge.find_connector(evse, connector_id)
        if stored is None:
            raise UnknownLocationError(f"unknown connector {connector_id} of EVSE {evse_uid} of location {location_id}")
        merged = merge.merge_patch(stored, merge.load_object(body))
        data = merge.dump(merged)
        connector = _revalidate(data, ocpi.Connector, "Connector")
        merge.put_connector(location, evse, merged)
        await self._save_location(session, row_id, location)
        return Change(False, data, connector.last_updated)

    async def get_location(  # noqa: PLR0917 - parameters follow the OCPI URL path
        self,
        session: AsyncSession,
        country_code: str,
        party_id: str,
        location_id: str,
        evse_uid: str | None = None,
        connector_id: str | None = None,
    ) -> bytes | None:
        """The stored Location, or one of its EVSEs or Connectors, as bytes sliced out of the stored JSON."""
        data = await self._get_data(session, LocationRow, self._location_key(country_code, party_id, location_id))
        if data is None or evse_uid is None:
            return data
        return merge.slice_child(data, evse_uid, connector_id)

    # ---- Tariffs (mod_tariffs §11) -----------------------------------------------------------------------------------

    def _tariff_key(self, country_code: str, party_id: str, tariff_id: str) -> dict[str, str]:
        return {**_owner_key(country_code, party_id), "tariff_id": ci_key(tariff_id)}

    async def put_tariff(
        self, session: AsyncSession, country_code: str, party_id: str, tariff_id: str, body: bytes
    ) -> Change:
        """Create or replace a Tariff and append it to the Tariff's history (clearing prices with the old ones)."""
        tariff = decode_body(body, ocpi.Tariff)
        check_owner(country_code, party_id, tariff)
        check_id("id", tariff_id, tariff.id)
        key = self._tariff_key(country_code, party_id, tariff_id)
        created, _ = await self._upsert(session, TariffRow, key, {"data": body, "last_updated": tariff.last_updated})
        await session.execute(
            insert(TariffVersionRow).values(
                **key, data=body, last_updated=tariff.last_updated, received_at=self._clock.now(), deleted=False
            )
        )
        return Change(created, body, tariff.last_updated)

    async def delete_tariff(self, session: AsyncSession, country_code: str, party_id: str, tariff_id: str) -> bool:
        """Remove the current Tariff (mod_tariffs §11.2.2.3) and record the DELETE in its history; False if unknown.

        A DELETE has no body and so no ``last_updated``: the version takes effect when the hub receives it.
        """
        key = self._tariff_key(country_code, party_id, tariff_id)
        removed = await session.scalar(delete(TariffRow).where(*_where(TariffRow, key)).returning(TariffRow.id))
        if removed is None:
            return False
        now = self._clock.now()
        await session.execute(
            insert(TariffVersionRow).values(**key, data=None, last_updated=now, received_at=now, deleted=True)
        )
        return True

    async def get_tariff(self, session: AsyncSession, country_code: str, party_id: str, tariff_id: str) -> bytes | None:
        return await self._get_data(session, TariffRow, self._tariff_key(country_code, party_id, tariff_id))

    async def tariff_at(
        self, session: AsyncSession, country_code: str, party_id: str, tariff_id: str, at: datetime
    ) -> bytes | None:
        """The Tariff as it was at ``at``: the latest version that took effect at or before it, None if deleted then.

        Versions are ordered by ``last_updated`` (the CPO's own time of the change), ties by arrival.
        """
        key = self._tariff_key(country_code, party_id, tariff_id)
        row = (
            await session.execute(
                select(TariffVersionRow.data, TariffVersionRow.deleted)
                .where(*_where(TariffVersionRow, key), TariffVersionRow.last_updated <= at)
                .order_by(TariffVersionRow.last_updated.desc(), TariffVersionRow.id.desc())
                .limit(1)
            )
        ).one_or_none()
        if row is None or row.deleted:
            return None
        data: bytes | None = row.data
        return data

    async def tariff_history(
        self, session: AsyncSession, country_code: str, party_id: str, tariff_id: str
    ) -> list[TariffVersion]:
        """Every version of a Tariff, oldest first, DELETEs included."""
        key = self._tariff_key(country_code, party_id, tariff_id)
        rows = await session.execute(
            select(
                TariffVersionRow.data,
                TariffVersionRow.last_updated,
                TariffVersionRow.received_at,
                TariffVersionRow.deleted,
            )
            .where(*_where(TariffVersionRow, key))
            .order_by(TariffVersionRow.last_updated, TariffVersionRow.id)
        )
        return [TariffVersion(row.data, row.last_updated, row.received_at, row.deleted) for row in rows]

    # ---- Tokens (mod_tokens §12) -------------------------------------------------------------------------------------

    def _token_key(self, country_code: str, party_id: str, uid: str, token_type: str) -> dict[str, str]:
        # TokenType values are upper-case enum values; a lower-case ``?type=`` is accepted all the same.
        return {**_owner_key(country_code, party_id), "uid": ci_key(uid), "type": ci_key(token_type)}

    @staticmethod
    def _token_columns(token: ocpi.Token) -> dict[str, Any]:
        return {
            "visual_number": token.visual_number,
            "issuer": token.issuer,
            "group_id": None if token.group_id is None else ci_key(token.group_id),
            "last_updated": token.last_updated,
        }

    async def put_token(  # noqa: PLR0917 - parameters follow the OCPI URL path
        self, session: AsyncSession, country_code: str, party_id: str, uid: str, token_type: str, body: bytes
    ) -> Change:
        """Create or replace a Token; ``token_type`` is the URL's ``type`` parameter (default RFID, §12.2.1.2)."""
        token = decode_body(body, ocpi.Token)
        check_owner(country_code, party_id, token)
        check_id("uid", uid, token.uid)
        check_id("type", token_type, token.type)
        created, _ = await self._upsert(
            session,
            TokenRow,
            self._token_key(country_code, party_id, uid, token_type),
            {"data": body, **self._token_columns(token)},
        )
        return Change(created, body, token.last_updated)

    async def patch_token(  # noqa: PLR0917 - parameters follow the OCPI URL path
        self, session: AsyncSession, country_code: str, party_id: str, uid: str, token_type: str, body: bytes
    ) -> Change:
        """Merge a Token PATCH, e.g. ``valid: false`` (mod_tokens §12.2.1.3); 2001 for a Token the hub lacks."""
        patch = decode_body(body, ocpi.TokenPatch)
        check_owner(country_code, party_id, patch)
        check_id("uid", uid, patch.uid)
        check_id("type", token_type, patch.type)
        key = self._token_key(country_code, party_id, uid, token_type)
        row = (
            await session.execute(select(TokenRow.id, TokenRow.data).where(*_where(TokenRow, key)).with_for_update())
        ).one_or_none()
        if row is None:
            raise UnknownObjectError(
                f"unknown token {country_code}/{party_id}/{uid} of type {token_type}: PUT it first"
            )
        data = merge.dump(merge.merge_patch(merge.load_object(row.data), merge.load_object(body)))
        token = _revalidate(data, ocpi.Token, "Token")
        await session.execute(
            update(TokenRow)
            .where(TokenRow.id == row.id)
            .values(data=data, updated_at=self._clock.now(), **self._token_columns(token))
        )
        return Change(False, data, token.last_updated)

    async def get_token(
        self, session: AsyncSession, country_code: str, party_id: str, uid: str, token_type: str = "RFID"
    ) -> bytes | None:
        return await self._get_data(session, TokenRow, self._token_key(country_code, party_id, uid, token_type))

    # ---- Sessions (mod_sessions §9) ----------------------------------------------------------------------------------

    def _session_key(self, country_code: str, party_id: str, session_id: str) -> dict[str, str]:
        return {**_owner_key(country_code, party_id), "session_id": ci_key(session_id)}

    @staticmethod
    def _session_columns(charging: ocpi.Session) -> dict[str, Any]:
        return {
            # The eMSP a Session belongs to is the owner of its token (mod_cdrs §10.4.5 CdrToken, 2.2.1).
            "emsp_country_code": ci_key(charging.cdr_token.country_code),
            "emsp_party_id": ci_key(charging.cdr_token.party_id),
            "last_updated": charging.last_updated,
        }

    async def put_session(
        self, session: AsyncSession, country_code: str, party_id: str, session_id: str, body: bytes
    ) -> Change:
        """Create or replace a Session; a PUT replaces the charging periods too (mod_sessions §9.2.2.2)."""
        put = session_put(country_code, party_id, session_id, body)
        (created,) = await self.put_sessions(session, [put])
        if isinstance(created, Exception):
            raise created
        return Change(created, body, put.last_updated)

    async def put_sessions(self, session: AsyncSession | Any, puts: list[SessionPut]) -> list[bool | Exception]:
        """Many checked Session PUTs at once (`hub.objects.bulk`); per PUT whether it created the Session.

        ``session`` is a session, or on PostgreSQL the asyncpg connection group commit writes a batch on directly.
        """
        driver = await bulk.driver(session)
        if driver is not None:
            return await bulk.put_sessions(driver, puts, self._clock.now())
        # The embedded default (SQLite serialises writers anyway): one by one with the store's own upsert.
        created: list[bool | Exception] = []
        for put in puts:
            key = dict(zip(bulk.KEY_COLUMNS["sessions"], put.key, strict=True))
            values = {
                "data": put.data,
                "emsp_country_code": put.emsp[0],
                "emsp_party_id": put.emsp[1],
                "last_updated": put.last_updated,
            }
            created.append((await self._upsert(session, SessionRow, key, values))[0])
        return created

    async def patch_session(
        self, session: AsyncSession, country_code: str, party_id: str, session_id: str, body: bytes
    ) -> Change:
        """Merge a Session PATCH; its ``charging_periods`` are appended to the stored ones (mod_sessions §9.2.2.3)."""
        patch = decode_body(body, ocpi.SessionPatch)
        check_owner(country_code, party_id, patch)
        check_id("id", session_id, patch.id)
        key = self._session_key(country_code, party_id, session_id)
        row = (
            await session.execute(
                select(SessionRow.id, SessionRow.data).where(*_where(SessionRow, key)).with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise UnknownObjectError(f"unknown session {country_code}/{party_id}/{session_id}: PUT it first")
        merged = merge.merge_patch(
            merge.load_object(row.data), merge.load_object(body), append=frozenset({"charging_periods"})
        )
        data = merge.dump(merged)
        charging = _revalidate(data, ocpi.Session, "Session")
        await session.execute(
            update(SessionRow)
            .where(SessionRow.id == row.id)
            .values(data=data, updated_at=self._clock.now(), **self._session_columns(charging))
        )
        return Change(False, data, charging.last_updated)

    async def get_session(
        self, session: AsyncSession, country_code: str, party_id: str, session_id: str
    ) -> bytes | None:
        return await self._get_data(session, SessionRow, self._session_key(country_code, party_id, session_id))

    async def session_emsp(
        self, session: AsyncSession, country_code: str, party_id: str, session_id: str
    ) -> tuple[str, str] | None:
        """The eMSP (upper-cased country_code, party_id) a stored Session belongs to: where its PATCHes go."""
        key = self._session_key(country_code, party_id, session_id)
        row = (
            await session.execute(
                select(SessionRow.emsp_country_code, SessionRow.emsp_party_id).where(*_where(SessionRow, key))
            )
        ).one_or_none()
        return None if row is None else (row.emsp_country_code, row.emsp_party_id)

    # ---- CDRs (mod_cdrs §10) -----------------------------------------------------------------------------------------

    async def store_cdr(self, session: AsyncSession, country_code: str, party_id: str, body: bytes) -> StoredCdr:
        """Keep a CDR byte for byte. CDRs are immutable (mod_cdrs §10.1): the same CDR again is an accepted replay
        that changes nothing, another CDR with the same (country_code, party_id, id) is refused.
        """
        (outcome,) = await self.store_cdrs(session, [cdr_insert(country_code, party_id, body)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def store_cdrs(self, session: AsyncSession | Any, cdrs: list[CdrInsert]) -> list[StoredCdr | Exception]:
        """Many checked CDRs at once (`hub.objects.bulk`); a conflicting CDR's outcome is its `CdrConflictError`.

        ``session`` is a session, or on PostgreSQL the asyncpg connection group commit writes a batch on directly.
        """
        now = self._clock.now()
        driver = await bulk.driver(session)
        if driver is not None:
            return await bulk.store_cdrs(driver, cdrs, now)
        # The embedded default: one by one, each either new or compared with the stored one.
        outcomes: list[StoredCdr | Exception] = []
        keys = bulk.KEY_COLUMNS["cdrs"]
        for cdr in cdrs:
            if await self._insert_new(session, CdrRow, bulk.cdr_values(cdr, now), list(keys)) is not None:
                outcomes.append(StoredCdr(cdr.id, True, cdr.emsp))
                continue
            where = _where(CdrRow, dict(zip(keys, cdr.key, strict=True)))
            stored = (
                await session.execute(select(CdrRow.data, CdrRow.emsp_country_code, CdrRow.emsp_party_id).where(*where))
            ).one()
            outcomes.append(bulk.replay(cdr, stored.data, (stored.emsp_country_code, stored.emsp_party_id)))
        return outcomes

    async def get_cdr(self, session: AsyncSession, country_code: str, party_id: str, cdr_id: str) -> bytes | None:
        key = {**_owner_key(country_code, party_id), "cdr_id": ci_key(cdr_id)}
        return await self._get_data(session, CdrRow, key)

    # ---- "GET All" pages (transport Pagination, hub notes §1.9 item 4) ----------------------------------------------

    @staticmethod
    def _visible_locations(viewer: Viewer) -> ColumnElement[bool]:
        """Published Locations, and unpublished ones one of the viewer's stored Tokens may see (mod_locations §8.3.1).

        A token matches a ``publish_allowed_to`` entry when it has every field the entry sets.
        """
        parties = viewer.party_keys()
        if not parties:
            return LocationRow.publish.is_(True)
        audience, token = LocationAudienceRow, TokenRow
        matches = and_(
            or_(audience.uid.is_(None), audience.uid == token.uid),
            or_(audience.type.is_(None), audience.type == token.type),
            or_(audience.visual_number.is_(None), audience.visual_number == token.visual_number),
            or_(audience.issuer.is_(None), audience.issuer == token.issuer),
            or_(audience.group_id.is_(None), audience.group_id == token.group_id),
        )
        allowed = exists(
            select(audience.id)
            .join(token, matches)
            .where(
                audience.location_row_id == LocationRow.id,
                _in_pairs(token.country_code, token.party_id, parties),
            )
        )
        return or_(LocationRow.publish.is_(True), allowed)

    async def page(
        self,
        session: AsyncSession,
        module: Module,
        *,
        viewer: Viewer,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        offset: int = 0,
        limit: int,
        after_id: int | None = None,
        total: int | None = None,
    ) -> Page:
        """One page of the stored objects of ``module`` that ``viewer`` may see, oldest created first.

        Only objects of permitted owners; Sessions and CDRs only of the viewer's own eMSPs (never broadcast, hub notes
        §4.2, §4.3); unpublished Locations only for holders of an allowed Token. ``date_from`` is inclusive and
        ``date_to`` exclusive on ``last_updated``; ordering by creation keeps paging stable while objects arrive.
        A ``total`` already counted for this crawl is answered again instead of counting on every page.
        """
        if module not in _MODULES:
            raise ValueError(f"no stored objects for module {module!r}")
        if offset < 0 or limit < 0:
            raise InvalidObjectError("offset and limit must not be negative")
        model: Any = {
            "locations": LocationRow,
            "tariffs": TariffRow,
            "tokens": TokenRow,
            "sessions": SessionRow,
            "cdrs": CdrRow,
        }[module]
        conditions: list[ColumnElement[bool]] = []
        if viewer.permitted_owners is not None:
            owners = sorted({(ci_key(cc), ci_key(pid)) for cc, pid in viewer.permitted_owners})
            conditions.append(_in_pairs(model.country_code, model.party_id, owners))
        if module in ("sessions", "cdrs"):
            conditions.append(_in_pairs(model.emsp_country_code, model.emsp_party_id, viewer.party_keys()))
        elif module == "locations":
            conditions.append(self._visible_locations(viewer))
        if date_from is not None:
            conditions.append(model.last_updated >= date_from)
        if date_to is not None:
            conditions.append(model.last_updated < date_to)
        where = and_(true(), *conditions)
        if total is None:
            total = await session.scalar(select(func.count()).select_from(model).where(where))
        query = select(model.id, model.data).where(where).order_by(model.id).limit(limit)
        # With after_id (from the hub's own next link) the page seeks by id: an OFFSET deep into 100,000 objects makes
        # PostgreSQL step over every earlier row on each page, which made paging quadratic (make bench GET All).
        query = query.where(model.id > after_id) if after_id is not None else query.offset(offset)
        rows = (await session.execute(query)).all()
        return Page([row.data for row in rows], total or 0, rows[-1].id if rows else None)
