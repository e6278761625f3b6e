"""Matching CDRs with what the hub stored: session, token, location, tariff versions, and other CDRs (ADR 0202).

Two parts:

* `resolve_tariffs` (pure) picks the tariffs to price a CDR with: for every tariff id the CDR references (its own
  ``tariffs`` and its periods' ``tariff_id``), the version the hub held at session start, falling back to the CDR's
  own copy; with no reference at all, the tariffs the stored connector names. It records where each came from.
* `Snapshot.load` reads, for a whole batch of CDRs, everything matching needs in a fixed number of queries (one per
  kind of object, whatever the batch size), so intake streams at a steady rate (ADR 0206). `Snapshot.facts_for`
  then answers per CDR from memory, and `Snapshot.remember` makes a CDR visible to the rest of its batch.

Stored keys are `ci_key`-normalised (types §16.1), so every lookup normalises too. The tariff version at a moment
follows `ObjectStore.tariff_at` exactly: the latest version whose ``last_updated`` is at or before the moment, ties
by arrival, none if that version is a DELETE.
"""

from __future__ import annotations

from bisect import insort
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.document import CdrKey, ParsedCdr, canonical_hash, ci_text, key_of, load_json, number, timestamp
from clearing.facts import MAX_LOOK_ALIKES, KnownCdr, StoredObject, StoreFacts, TariffResolution, TariffUse
from clearing.models import ClearingCdrRow
from clearing.pricing import InputError, Tariff, tariff_from_builtins
from clearing.rules.base import pointer
from hub.objects.models import LocationRow, SessionRow, TariffVersionRow, TokenRow
from hub.platform.keysets import CHUNK, keys_in

__all__ = [
    "LOOK_ALIKE_WINDOW",
    "Snapshot",
    "StoredTariff",
    "VersionLookup",
    "connector_tariff_ids",
    "known_from",
    "look_alike_windows",
    "resolve_tariffs",
    "tariff_references",
]

#: Two CDRs of one token and EVSE starting this close together may be one session sent twice (ID-FUZZY).
LOOK_ALIKE_WINDOW: Final = timedelta(seconds=60)
_LOOK_ALIKE_ENERGY: Final = Decimal("0.01")
# The tariff fields that decide a price; a CDR's copy differing only in texts or last_updated is the same tariff.
_PRICING_FIELDS: Final = (
    "currency",
    "type",
    "elements",
    "min_price",
    "max_price",
    "start_date_time",
    "end_date_time",
)


@dataclass(frozen=True, slots=True)
class StoredTariff:
    """A stored tariff version: its JSON, the pricing view (None if pricing cannot read it) and when it took effect."""

    doc: Mapping[str, Any]
    tariff: Tariff | None
    last_updated: datetime


#: Finds the stored version of a tariff (by `ci_key` of its id) valid at session start; None when there is none.
VersionLookup = Callable[[str], StoredTariff | None]


def tariff_references(doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The tariff ids a CDR references, first mention first: (ci key, id as written, JSON pointer)."""
    found: dict[str, tuple[str, str, str]] = {}
    for index, tariff in enumerate(doc.get("tariffs") or []):
        if isinstance(tariff, dict) and isinstance(tariff.get("id"), str):
            found.setdefault(
                ci_text(tariff["id"]) or "", (ci_text(tariff["id"]) or "", tariff["id"], pointer("tariffs", index))
            )
    for index, period in enumerate(doc.get("charging_periods") or []):
        if isinstance(period, dict) and isinstance(period.get("tariff_id"), str):
            key = ci_text(period["tariff_id"]) or ""
            found.setdefault(key, (key, period["tariff_id"], pointer("charging_periods", index, "tariff_id")))
    return list(found.values())


def connector_tariff_ids(location: Mapping[str, Any], evse_uid: str | None, connector_id: str | None) -> list[str]:
    """The ``tariff_ids`` of the stored connector the CDR names (mod_locations §8.3.3), as written."""
    for evse in location.get("evses") or []:
        if not isinstance(evse, dict) or ci_text(evse.get("uid")) != evse_uid:
            continue
        for connector in evse.get("connectors") or []:
            if isinstance(connector, dict) and ci_text(connector.get("id")) == connector_id:
                ids = connector.get("tariff_ids") or []
                return [value for value in ids if isinstance(value, str)]
    return []


def _tariff_view(doc: Mapping[str, Any]) -> Tariff | None:
    try:
        return tariff_from_builtins(doc)
    except InputError:
        return None


def _pricing_part(doc: Mapping[str, Any]) -> str:
    return canonical_hash({name: doc.get(name) for name in _PRICING_FIELDS})


def _summarise(uses: Sequence[TariffUse]) -> str:
    sources = {use.source for use in uses if use.tariff is not None}
    if not sources:
        return "none"
    return sources.pop() if len(sources) == 1 else "mixed"


def resolve_tariffs(
    cdr: ParsedCdr,
    *,
    given: Sequence[Mapping[str, Any]] | None = None,
    lookup: VersionLookup | None = None,
    connector_tariffs: Sequence[str] = (),
) -> TariffResolution:
    """The tariffs to price ``cdr`` with, and where each came from (`TariffUse.source`).

    ``given`` (tariff JSON objects) overrides everything, as the CLI's ``--tariff`` does. Otherwise each referenced
    id takes the stored version valid at session start (``lookup``; None means "no store": pre-flight) and falls
    back to the CDR's own copy. A CDR referencing no tariff at all is priced with the stored versions of its
    connector's ``tariff_ids`` (source "location"), and failing that with its own untitled tariffs.
    """
    if given is not None:
        uses = [
            TariffUse(
                tariff_id=doc.get("id") if isinstance(doc.get("id"), str) else None,
                source="given",
                pointer="",
                tariff=_tariff_view(doc),
                doc=doc,
            )
            for doc in given
        ]
        return TariffResolution(tuple(uses), _summarise(uses))
    embedded: dict[str, tuple[int, Mapping[str, Any]]] = {}
    untitled: list[tuple[int, Mapping[str, Any]]] = []
    for index, tariff in enumerate(cdr.doc.get("tariffs") or []):
        if not isinstance(tariff, dict):
            continue
        if isinstance(tariff.get("id"), str):
            embedded.setdefault(ci_text(tariff["id"]) or "", (index, tariff))
        else:
            untitled.append((index, tariff))
    uses = []
    references = tariff_references(cdr.doc)
    for key, written, where in references:
        stored = lookup(key) if lookup is not None else None
        own = embedded.get(key)
        if stored is not None and stored.tariff is not None:
            differs = own is not None and _pricing_part(own[1]) != _pricing_part(stored.doc)
            uses.append(
                TariffUse(
                    tariff_id=written,
                    source="store",
                    pointer=where,
                    tariff=stored.tariff,
                    doc=stored.doc,
                    version=stored.last_updated,
                    embedded_differs=differs,
                    embedded_pointer=pointer("tariffs", own[0]) if own is not None else None,
                )
            )
        elif own is not None:
            index, doc = own
            uses.append(
                TariffUse(
                    tariff_id=written,
                    source="cdr",
                    pointer=where,
                    tariff=_tariff_view(doc),
                    doc=doc,
                    embedded_pointer=pointer("tariffs", index),
                )
            )
        else:
            uses.append(TariffUse(tariff_id=written, source="missing", pointer=where))
    if not references and lookup is not None:
        for written in connector_tariffs:
            stored = lookup(ci_text(written) or "")
            if stored is not None and stored.tariff is not None:
                uses.append(
                    TariffUse(
                        tariff_id=written,
                        source="location",
                        pointer="/cdr_location/connector_id",
                        tariff=stored.tariff,
                        doc=stored.doc,
                        version=stored.last_updated,
                    )
                )
    if not any(use.tariff is not None for use in uses):
        for index, doc in untitled:
            uses.append(
                TariffUse(
                    tariff_id=None,
                    source="cdr",
                    pointer=pointer("tariffs", index),
                    tariff=_tariff_view(doc),
                    doc=doc,
                    embedded_pointer=pointer("tariffs", index),
                )
            )
    return TariffResolution(tuple(uses), _summarise(uses))


# --- the batch snapshot ------------------------------------------------------------------------------------------


#: Two look-alike windows closer than this are read as one: a few extra rows instead of another OR branch.
_WINDOW_MERGE_GAP: Final = timedelta(minutes=30)
#: At most this many windows (OR branches) per query.
_MAX_WINDOWS: Final = 32


def look_alike_windows(starts: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """The start times a look-alike of any of ``starts`` may have (±LOOK_ALIKE_WINDOW), as few sorted intervals:
    their union holds every such time, intervals less than half an hour apart are merged, and at most 32 remain."""
    windows: list[tuple[datetime, datetime]] = []
    for start in sorted(starts):
        low, high = start - LOOK_ALIKE_WINDOW, start + LOOK_ALIKE_WINDOW
        if windows and low - windows[-1][1] <= _WINDOW_MERGE_GAP:
            windows[-1] = (windows[-1][0], max(windows[-1][1], high))
        else:
            windows.append((low, high))
    if len(windows) > _MAX_WINDOWS:  # a sparse batch: close the smallest gaps until the query stays small
        gaps = sorted(range(1, len(windows)), key=lambda i: windows[i][0] - windows[i - 1][1])
        closed = set(gaps[: len(windows) - _MAX_WINDOWS])
        merged: list[tuple[datetime, datetime]] = []
        for index, window in enumerate(windows):
            if index in closed:
                merged[-1] = (merged[-1][0], window[1])
            else:
                merged.append(window)
        windows = merged
    return windows


def _by_key(known: KnownCdr) -> CdrKey:
    return known.key


def _owner(cdr: ParsedCdr) -> tuple[str, str]:
    return cdr.key[0], cdr.key[1]


def _token_key(doc: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    parts = (
        key_of(doc, "cdr_token", "country_code"),
        key_of(doc, "cdr_token", "party_id"),
        key_of(doc, "cdr_token", "uid"),
        key_of(doc, "cdr_token", "type"),
    )
    if any(part is None for part in parts):
        return None
    return (parts[0] or "", parts[1] or "", parts[2] or "", parts[3] or "")


def known_from(cdr: ParsedCdr, record_id: int | None = None) -> KnownCdr:
    """A `KnownCdr` for a CDR being taken in (its doc kept, for credit CDRs that name it later in the batch)."""
    return KnownCdr(
        key=cdr.key,
        record_id=record_id,
        credit=cdr.credit,
        credited=False,
        session_id=key_of(cdr.doc, "session_id"),
        credit_reference_id=key_of(cdr.doc, "credit_reference_id"),
        token_uid=key_of(cdr.doc, "cdr_token", "uid"),
        evse_uid=key_of(cdr.doc, "cdr_location", "evse_uid"),
        start=cdr.view.start_date_time if cdr.view is not None else timestamp(cdr.doc.get("start_date_time")),
        total_energy=number(cdr.doc.get("total_energy")),
        doc=cdr.doc,
    )


@dataclass(slots=True)
class Snapshot:
    """What the database holds for one batch of CDRs, plus the CDRs of the batch taken in so far."""

    sessions: dict[tuple[str, str, str], StoredObject] = field(default_factory=dict)
    tokens: dict[tuple[str, str, str, str], StoredObject] = field(default_factory=dict)
    locations: dict[tuple[str, str, str], StoredObject] = field(default_factory=dict)
    # (cc, pid, tariff_id) -> versions ordered by (last_updated, arrival): (last_updated, deleted, row id, data)
    histories: dict[tuple[str, str, str], list[tuple[datetime, bool, int, bytes | None]]] = field(default_factory=dict)
    known: dict[CdrKey, KnownCdr] = field(default_factory=dict)
    by_session: dict[tuple[str, str, str], list[KnownCdr]] = field(default_factory=lambda: defaultdict(list))
    credits_of: dict[CdrKey, list[KnownCdr]] = field(default_factory=lambda: defaultdict(list))
    # (token uid, EVSE uid) -> CDRs in key order: look-alikes are found in that order and the search stops after
    # the first few, so a charge replayed thousands of times costs no more than one replayed six times.
    by_charger: dict[tuple[str, str | None], list[KnownCdr]] = field(default_factory=lambda: defaultdict(list))
    _parsed_tariffs: dict[int, StoredTariff | None] = field(default_factory=dict)

    # ---- loading --------------------------------------------------------------------------------------------------

    @classmethod
    async def load(cls, session: AsyncSession, cdrs: Sequence[ParsedCdr]) -> Snapshot:
        """Read everything matching needs for ``cdrs`` (about eight queries per batch)."""
        snapshot = cls()
        if not cdrs:
            return snapshot
        await snapshot._load_sessions(session, cdrs)
        await snapshot._load_tokens(session, cdrs)
        await snapshot._load_locations(session, cdrs)
        await snapshot._load_tariffs(session, cdrs)
        await snapshot._load_known(session, cdrs)
        return snapshot

    async def _load_sessions(self, session: AsyncSession, cdrs: Sequence[ParsedCdr]) -> None:
        keys = {(*_owner(c), sid) for c in cdrs if (sid := key_of(c.doc, "session_id")) is not None}
        if not keys:
            return
        model = SessionRow
        for condition in keys_in(session, (model.country_code, model.party_id, model.session_id), keys):
            rows = await session.execute(
                select(model.id, model.country_code, model.party_id, model.session_id, model.data, model.last_updated)
                .where(condition)
            )  # fmt: skip
            for row in rows:
                self.sessions[(row.country_code, row.party_id, row.session_id)] = StoredObject(
                    row.id, load_json(row.data), row.last_updated
                )

    async def _load_tokens(self, session: AsyncSession, cdrs: Sequence[ParsedCdr]) -> None:
        keys = {key for c in cdrs if (key := _token_key(c.doc)) is not None}
        if not keys:
            return
        model = TokenRow
        for condition in keys_in(session, (model.country_code, model.party_id, model.uid, model.type), keys):
            rows = await session.execute(
                select(model.id, model.country_code, model.party_id, model.uid, model.type, model.data,
                       model.last_updated).where(condition)
            )  # fmt: skip
            for row in rows:
                self.tokens[(row.country_code, row.party_id, row.uid, row.type)] = StoredObject(
                    row.id, load_json(row.data), row.last_updated
                )

    async def _load_locations(self, session: AsyncSession, cdrs: Sequence[ParsedCdr]) -> None:
        keys = {(*_owner(c), lid) for c in cdrs if (lid := key_of(c.doc, "cdr_location", "id")) is not None}
        if not keys:
            return
        model = LocationRow
        for condition in keys_in(session, (model.country_code, model.party_id, model.location_id), keys):
            rows = await session.execute(
                select(model.id, model.country_code, model.party_id, model.location_id, model.data, model.last_updated)
                .where(condition)
            )  # fmt: skip
            for row in rows:
                self.locations[(row.country_code, row.party_id, row.location_id)] = StoredObject(
                    row.id, load_json(row.data), row.last_updated
                )

    def _connector_tariffs(self, cdr: ParsedCdr) -> list[str]:
        location = self.location_of(cdr)
        if location is None:
            return []
        return connector_tariff_ids(
            location.doc, key_of(cdr.doc, "cdr_location", "evse_uid"), key_of(cdr.doc, "cdr_location", "connector_id")
        )

    async def _load_tariffs(self, session: AsyncSession, cdrs: Sequence[ParsedCdr]) -> None:
        keys: set[tuple[str, str, str]] = set()
        for cdr in cdrs:
            references = tariff_references(cdr.doc)
            keys.update((*_owner(cdr), key) for key, _, _ in references)
            if not references:
                keys.update((*_owner(cdr), ci_text(tid) or "") for tid in self._connector_tariffs(cdr))
        if not keys:
            return
        model = TariffVersionRow
        for condition in keys_in(session, (model.country_code, model.party_id, model.tariff_id), keys):
            rows = await session.execute(
                select(model.id, model.country_code, model.party_id, model.tariff_id, model.data, model.last_updated,
                       model.deleted)
                .where(condition)
                .order_by(model.last_updated, model.id)
            )  # fmt: skip
            for row in rows:
                self.histories.setdefault((row.country_code, row.party_id, row.tariff_id), []).append(
                    (row.last_updated, row.deleted, row.id, row.data)
                )

    async def _load_known(self, session: AsyncSession, cdrs: Sequence[ParsedCdr]) -> None:
        model = ClearingCdrRow
        session_keys = {(*_owner(c), sid) for c in cdrs if (sid := key_of(c.doc, "session_id")) is not None}
        # Originals that credit CDRs of the batch name, and the batch's own keys (for credits that came first).
        references = {(*_owner(c), ref) for c in cdrs if c.credit and (ref := key_of(c.doc, "credit_reference_id"))}
        own = {c.key for c in cdrs}
        uids = sorted({uid for c in cdrs if (uid := key_of(c.doc, "cdr_token", "uid")) is not None})
        starts = [c.view.start_date_time for c in cdrs if c.view is not None]
        conditions: list[ColumnElement[bool]] = []
        # Unnested key arrays: take_in keeps clearing_cdrs' statistics fresh first (hub.platform.keysets says why).
        if session_keys:
            conditions += keys_in(session, (model.country_code, model.party_id, model.session_id), session_keys)
        conditions += keys_in(
            session, (model.country_code, model.party_id, model.credit_reference_id), references | own
        )
        if uids and starts:
            # Look-alike candidates: the batch's tokens around the batch's starts. One window from the earliest to the
            # latest start read a growing share of the table once a late CDR (a credit, a resend) joined a batch:
            # 1,000 tokens and a two-week spread made each batch read most of the period (intake fell from 370 to
            # 210 CDRs/s by half a million). The windows around the starts, merged where they nearly touch, do not.
            windows = look_alike_windows(starts)
            when = or_(*(model.start_date_time.between(low, high) for low, high in windows))
            conditions += [
                and_(model.token_uid.in_(chunk), when)
                for chunk in (uids[start : start + CHUNK] for start in range(0, len(uids), CHUNK))
            ]
        columns = (
            model.id, model.country_code, model.party_id, model.cdr_id, model.credit, model.commercial_state,
            model.session_id, model.credit_reference_id, model.token_uid, model.evse_uid, model.start_date_time,
            model.total_energy,
        )  # fmt: skip
        for condition in conditions:
            for row in await session.execute(select(*columns).where(condition)):
                self._add_row(row, None)
        if references:
            for condition in keys_in(session, (model.country_code, model.party_id, model.cdr_id), references):
                for row in await session.execute(select(*columns, model.raw).where(condition)):
                    self._add_row(row, load_json(row.raw))

    def _add_row(self, row: Any, doc: Mapping[str, Any] | None) -> None:
        key: CdrKey = (row.country_code, row.party_id, row.cdr_id)
        existing = self.known.get(key)
        if existing is not None:
            if doc is not None:
                existing.doc = doc
            return
        self._index(
            KnownCdr(
                key=key,
                record_id=row.id,
                credit=row.credit,
                credited=row.commercial_state == "credited",
                session_id=row.session_id,
                credit_reference_id=row.credit_reference_id,
                token_uid=row.token_uid,
                evse_uid=row.evse_uid,
                start=row.start_date_time,
                total_energy=row.total_energy,
                doc=doc,
            )
        )

    def _index(self, known: KnownCdr) -> None:
        self.known[known.key] = known
        owner = known.key[:2]
        if known.session_id is not None:
            self.by_session[(*owner, known.session_id)].append(known)
        if known.credit and known.credit_reference_id is not None:
            self.credits_of[(*owner, known.credit_reference_id)].append(known)
        if known.token_uid is not None:
            insort(self.by_charger[(known.token_uid, known.evse_uid)], known, key=_by_key)

    # ---- answering ------------------------------------------------------------------------------------------------

    def location_of(self, cdr: ParsedCdr) -> StoredObject | None:
        location_id = key_of(cdr.doc, "cdr_location", "id")
        return None if location_id is None else self.locations.get((*_owner(cdr), location_id))

    def version_lookup(self, cdr: ParsedCdr) -> VersionLookup:
        """Finds the stored version of a tariff of ``cdr``'s CPO valid at its session start (`tariff_at` rules)."""
        start = cdr.view.start_date_time if cdr.view is not None else None

        def lookup(tariff_key: str) -> StoredTariff | None:
            history = self.histories.get((*_owner(cdr), tariff_key))
            if not history or start is None:
                return None
            current = None
            for version in history:
                if version[0] > start:
                    break
                current = version
            if current is None or current[1] or current[3] is None:
                return None
            return self._parsed(current[2], current[3], current[0])

        return lookup

    def _parsed(self, version_id: int, data: bytes, last_updated: datetime) -> StoredTariff | None:
        if version_id not in self._parsed_tariffs:
            doc = load_json(data)
            self._parsed_tariffs[version_id] = (
                StoredTariff(doc, _tariff_view(doc), last_updated) if isinstance(doc, dict) else None
            )
        return self._parsed_tariffs[version_id]

    def resolve_tariffs(self, cdr: ParsedCdr) -> TariffResolution:
        return resolve_tariffs(cdr, lookup=self.version_lookup(cdr), connector_tariffs=self._connector_tariffs(cdr))

    def facts_for(self, cdr: ParsedCdr) -> StoreFacts:
        owner = _owner(cdr)
        session_id = key_of(cdr.doc, "session_id")
        token_key = _token_key(cdr.doc)
        me = known_from(cdr)
        same_session: list[KnownCdr] = []
        if session_id is not None:
            same_session = [
                other
                for other in self.by_session.get((*owner, session_id), [])
                if other.key != cdr.key and not other.credit and not other.credited
            ]
        original: KnownCdr | None = None
        other_credits: list[KnownCdr] = []
        if cdr.credit and me.credit_reference_id is not None:
            original = self.known.get((*owner, me.credit_reference_id))
            other_credits = [
                other for other in self.credits_of.get((*owner, me.credit_reference_id), []) if other.key != cdr.key
            ]
        look_alikes = list(islice(self._look_alikes(me), MAX_LOOK_ALIKES + 1))
        return StoreFacts(
            session=self.sessions.get((*owner, session_id)) if session_id is not None else None,
            token=self.tokens.get(token_key) if token_key is not None else None,
            location=self.location_of(cdr),
            # In key order: the database returns them in no particular order, and what is stored must not depend
            # on where batch boundaries fell (ADR 0211).
            same_session=tuple(sorted(same_session, key=_by_key)),
            look_alikes=tuple(look_alikes[:MAX_LOOK_ALIKES]),
            more_look_alikes=len(look_alikes) > MAX_LOOK_ALIKES,
            original=original,
            other_credits=tuple(other_credits),
        )

    def _look_alikes(self, me: KnownCdr) -> Iterable[KnownCdr]:
        if me.credit or me.token_uid is None or me.start is None:
            return
        for other in self.by_charger.get((me.token_uid, me.evse_uid), []):
            if other.key == me.key or other.credit or other.credited or other.start is None:
                continue
            if abs(other.start - me.start) > LOOK_ALIKE_WINDOW:
                continue
            if me.session_id is not None and other.session_id == me.session_id and other.key[:2] == me.key[:2]:
                continue  # the same session twice is rule CDR040's business
            mine, theirs = me.total_energy, other.total_energy
            if mine is None or theirs is None or abs(mine - theirs) > _LOOK_ALIKE_ENERGY * max(abs(mine), abs(theirs)):
                continue
            yield other

    def credits_waiting_for(self, key: CdrKey) -> list[KnownCdr]:
        """Credit CDRs already known that credit the CDR with ``key`` (they arrived before it)."""
        return [other for other in self.credits_of.get(key, []) if other.key != key]

    def remember(self, known: KnownCdr) -> None:
        """Make a CDR of the batch visible to the CDRs after it; a credit CDR marks the CDR it credits."""
        if known.key in self.known:
            return
        self._index(known)
        if known.credit and known.credit_reference_id is not None:
            original = self.known.get((*known.key[:2], known.credit_reference_id))
            if original is not None and not original.credit:
                original.credited = True
        elif self.credits_waiting_for(known.key):
            known.credited = True
