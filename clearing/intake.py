"""CDR intake: one clearing record per CDR, matched, validated and priced, in batches (ADR 0201-0206).

Entry points:

* `ClearingService.take_in` takes a batch of CDR payloads in: new CDRs become records (matching, rules, price
  verification, events); the same CDR again changes nothing; another CDR under a known key is refused and kept as a
  rejected intake attempt with its payload.
* `ClearingService.sync_from_store` (and the module function `sync_from_store`) picks up CDRs the hub stored
  (table ``cdrs``) that no record or rejection names yet, one batch per call; `run_sync` loops, one transaction per
  batch.
* `import_file` reads a JSON file (one CDR, a list, an OCPI response envelope, or JSON Lines) in batches.
* `ClearingService.recheck`, `.report`, `.set_commercial_state` and `.preflight` re-run, read, decide and check.

Every method takes the caller's `AsyncSession` and never commits, except `run_sync` and `import_file`, which own
their transactions (one per batch). Memory is bounded by the batch size: a batch is read, processed, written and
dropped before the next (ADR 0206).
"""

from __future__ import annotations

import asyncio
import hashlib
import mmap
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast

import msgspec
from sqlalchemy import Table, delete, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clearing.checks import CheckReport, Evaluation, evaluate, given_tariffs, report_of
from clearing.document import CdrKey, ParsedCdr, RefusedPayload, key_of, number, parse_cdr, text, timestamp
from clearing.facts import KnownCdr, StoreFacts
from clearing.matching import Snapshot, known_from, resolve_tariffs
from clearing.models import (
    ClearingCdrRow,
    ClearingEventRow,
    ClearingFindingRow,
    ClearingPriceCheckRow,
    ClearingRejectionRow,
)
from clearing.rules import Finding
from clearing.states import Dimension, check_commercial_transition
from clearing.verification import DEFAULT_TOLERANCE, PriceVerification
from hub.objects.models import CdrRow
from hub.ocpi.types import ci_key
from hub.platform.clock import Clock, SystemClock
from hub.platform.keysets import keep_statistics, keys_in

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ClearingService",
    "EventReport",
    "IntakeItem",
    "IntakeOutcome",
    "IntakeSummary",
    "RecordReport",
    "UnknownRecordError",
    "import_file",
    "iter_file",
    "run_sync",
    "sync_from_store",
]

DEFAULT_BATCH_SIZE: Final = 500
#: Parsing, rules and pricing cost about a millisecond of CPU per CDR. In the worker the clearing schedule shares its
#: event loop with deliveries, so a batch hands the loop back every 32 CDRs: a delivery waits ~30 ms, not a batch.
YIELD_EVERY: Final = 32
_MAX_AMOUNT: Final = Decimal("1e15")
_ENVELOPE: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])


class UnknownRecordError(LookupError):
    """No clearing record has this key."""


@dataclass(frozen=True, slots=True)
class IntakeItem:
    """One payload to take in: ``source`` is "store" or "file"; ``store_row_id`` the ``cdrs`` row it came from."""

    raw: bytes
    source: str
    source_ref: str | None = None
    store_row_id: int | None = None


class IntakeOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one payload: "accepted" (a new record), "duplicate" (known, unchanged), "conflict" or
    "invalid" (refused and kept as a rejected intake attempt)."""

    status: str
    cdr: str | None
    record_id: int | None = None
    validation_state: str | None = None
    pricing_state: str | None = None
    message: str | None = None


class IntakeSummary(msgspec.Struct, kw_only=True):
    """Counts of an intake run (a sync, an import), per outcome and per validation and pricing state."""

    seen: int = 0
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    invalid: int = 0
    validation: dict[str, int] = msgspec.field(default_factory=dict)
    pricing: dict[str, int] = msgspec.field(default_factory=dict)
    # The last cdrs row a sync looked at (its cursor), or the file's SHA-256 for an import.
    last_store_row_id: int | None = None
    file_sha256: str | None = None

    def add(self, outcomes: Sequence[IntakeOutcome]) -> None:
        for outcome in outcomes:
            self.seen += 1
            if outcome.status == "accepted":
                self.accepted += 1
                for counts, state in ((self.validation, outcome.validation_state),
                                      (self.pricing, outcome.pricing_state)):  # fmt: skip
                    if state is not None:
                        counts[state] = counts.get(state, 0) + 1
            elif outcome.status == "duplicate":
                self.duplicates += 1
            elif outcome.status == "conflict":
                self.conflicts += 1
            elif outcome.status == "invalid":
                self.invalid += 1


class EventReport(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    dimension: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    details: Any = None


class RecordReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything clearing holds about one CDR: the record, its links, findings, price check and history."""

    record: dict[str, Any]
    links: Any
    findings: list[Finding]
    price: dict[str, Any] | None
    events: list[EventReport]


# --- helpers -------------------------------------------------------------------------------------------------------


def _fit(value: str | None, length: int) -> str | None:
    return value if value is not None and len(value) <= length else None


def _amount(value: Any) -> Decimal | None:
    amount = number(value)
    return amount if amount is not None and abs(amount) < _MAX_AMOUNT else None


def _price_part(doc: Mapping[str, Any], basis: str) -> Decimal | None:
    cost = doc.get("total_cost")
    return _amount(cost.get(basis)) if isinstance(cost, dict) else None


def _table(model: Any) -> Table:
    """The Core table of a model: bulk inserts through Core are about four times faster than through the ORM."""
    return cast("Table", model.__table__)


def _insert(session: AsyncSession, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(_table(model))
    if dialect == "sqlite":
        return sqlite.insert(_table(model))
    raise NotImplementedError(f"unsupported database dialect {dialect}")  # pragma: no cover


def _match(found: object, referenced: bool) -> str:
    return "matched" if found is not None else "missing" if referenced else "not_referenced"


def _validation_reason(findings: Sequence[Finding]) -> str:
    if not findings:
        return "no findings"
    counts = Counter(finding.severity for finding in findings)
    codes = ", ".join(sorted({finding.code for finding in findings}))
    parts = ", ".join(f"{counts[s]} {s}" for s in ("error", "warning", "info") if counts[s])
    return f"{parts}: {codes}"


def _pricing_reason(price: PriceVerification) -> str:
    tariffs = ", ".join(price.tariff_ids) or "-"
    if price.outcome == "unpriceable":
        return f"unpriceable: {price.error}"
    if price.outcome == "matched":
        return f"every total matches (tariffs {tariffs}, source {price.tariff_source}, time zone {price.time_zone})"
    shown = "; ".join(f"{d.field} stated {d.stated}, computed {d.computed}" for d in price.differences[:4])
    more = f" and {len(price.differences) - 4} more" if len(price.differences) > 4 else ""
    return f"{price.outcome} (tolerance {price.tolerance}, tariffs {tariffs}): {shown}{more}"


def _price_check_values(record_id: int, price: PriceVerification, now: datetime) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "outcome": price.outcome,
        "checked_at": now,
        "tolerance": price.tolerance,
        "time_zone": _fit(price.time_zone, 64),
        "tariff_source": price.tariff_source,
        "computed": price.computed,
        "differences": msgspec.to_builtins(price.differences, builtin_types=(Decimal,)),
        "explanation": price.explanation,
        "warnings": msgspec.to_builtins(price.warnings, builtin_types=(Decimal,)),
        "error": price.error,
    }


def _links(store: StoreFacts, evaluation: Evaluation, credited: KnownCdr | None) -> dict[str, Any]:
    def stored(found: Any, **extra: Any) -> dict[str, Any] | None:
        return None if found is None else {"row_id": found.row_id, **extra}

    session, token, location = store.session, store.token, store.location
    return {
        "session": stored(session, status=session.doc.get("status") if session else None),
        "token": stored(token, valid=token.doc.get("valid") if token else None),
        "location": stored(location, time_zone=location.doc.get("time_zone") if location else None),
        "tariffs": [
            {
                "tariff_id": use.tariff_id,
                "source": use.source,
                "pointer": use.pointer,
                "version_last_updated": use.version,
                "differs_from_cdr_copy": use.embedded_differs,
            }
            for use in evaluation.tariffs.uses
        ],
        "time_zone": evaluation.price.time_zone,
        "credited_cdr": credited.label if credited is not None else None,
        "same_session": [other.label for other in store.same_session],
        "look_alikes": [other.label for other in store.look_alikes],
        "more_look_alikes": store.more_look_alikes,
    }


@dataclass(slots=True)
class _Assessed:
    """One CDR's evaluation and the record values that follow from it, before it is written."""

    cdr: ParsedCdr
    evaluation: Evaluation
    values: dict[str, Any]
    known: KnownCdr
    original: KnownCdr | None
    # The original was not marked credited before this credit CDR (so this one credits it now).
    credits_now: bool
    # Credit CDRs that arrived before this (their original): they are re-checked once it is written.
    waiting_credits: list[KnownCdr] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Existing:
    id: int
    content_hash: str
    store_row_id: int | None


# --- the service ---------------------------------------------------------------------------------------------------


class ClearingService:
    """Intake, matching, validation and price verification of CDRs; stateless apart from its settings."""

    def __init__(self, clock: Clock, *, tolerance: Decimal = DEFAULT_TOLERANCE) -> None:
        self._clock = clock
        self.tolerance = tolerance

    # ---- assessing ------------------------------------------------------------------------------------------------

    def _assess(self, cdr: ParsedCdr, snapshot: Snapshot, now: datetime) -> _Assessed:
        store = snapshot.facts_for(cdr)
        evaluation = evaluate(
            cdr, tariffs=snapshot.resolve_tariffs(cdr), store=store, now=now, tolerance=self.tolerance
        )
        known = known_from(cdr)
        original = store.original if cdr.credit else None
        credits_now = original is not None and not original.credit and not original.credited
        waiting = [] if cdr.credit else snapshot.credits_waiting_for(cdr.key)
        snapshot.remember(known)
        doc, view = cdr.doc, cdr.view
        findings = evaluation.findings
        values: dict[str, Any] = {
            "emsp_country_code": _fit(key_of(doc, "cdr_token", "country_code"), 2),
            "emsp_party_id": _fit(key_of(doc, "cdr_token", "party_id"), 3),
            "session_id": _fit(key_of(doc, "session_id"), 36),
            "credit": cdr.credit,
            "credit_reference_id": _fit(key_of(doc, "credit_reference_id"), 39),
            "credits_record_id": original.record_id if original is not None else None,
            "token_uid": _fit(key_of(doc, "cdr_token", "uid"), 36),
            "token_type": _fit(key_of(doc, "cdr_token", "type"), 16),
            "location_id": _fit(key_of(doc, "cdr_location", "id"), 36),
            "evse_uid": _fit(key_of(doc, "cdr_location", "evse_uid"), 36),
            "start_date_time": view.start_date_time if view else timestamp(doc.get("start_date_time")),
            "end_date_time": view.end_date_time if view else timestamp(doc.get("end_date_time")),
            "currency": _fit(text(doc, "currency"), 3),
            "total_cost_excl_vat": _price_part(doc, "excl_vat"),
            "total_cost_incl_vat": _price_part(doc, "incl_vat"),
            "total_energy": _amount(doc.get("total_energy")),
            "checked_at": now,
            "session_match": _match(store.session, "session_id" in doc),
            "token_match": _match(store.token, "cdr_token" in doc),
            "location_match": _match(store.location, "cdr_location" in doc),
            "tariff_source": evaluation.tariffs.source,
            "links": _links(store, evaluation, original),
            "validation_state": evaluation.validation_state,
            "pricing_state": evaluation.price.outcome,
            "error_count": sum(1 for f in findings if f.severity == "error"),
            "warning_count": sum(1 for f in findings if f.severity == "warning"),
        }
        return _Assessed(cdr, evaluation, values, known, original, credits_now, waiting)

    @staticmethod
    def _event(
        dimension: Dimension, from_state: str | None, to_state: str, actor: str, reason: str, **details: Any
    ) -> dict[str, Any]:
        return {
            "dimension": str(dimension),
            "from_state": from_state,
            "to_state": to_state,
            "actor": actor,
            "reason": reason,
            "details": details or None,
        }

    # ---- intake ---------------------------------------------------------------------------------------------------

    async def _existing(self, session: AsyncSession, keys: set[CdrKey]) -> dict[CdrKey, _Existing]:
        found: dict[CdrKey, _Existing] = {}
        model = ClearingCdrRow
        for condition in keys_in(session, (model.country_code, model.party_id, model.cdr_id), keys):
            rows = await session.execute(
                select(model.id, model.country_code, model.party_id, model.cdr_id, model.content_hash,
                       model.store_row_id).where(condition)
            )  # fmt: skip
            for row in rows:
                found[(row.country_code, row.party_id, row.cdr_id)] = _Existing(
                    row.id, row.content_hash, row.store_row_id
                )
        return found

    async def take_in(
        self, session: AsyncSession, items: Sequence[IntakeItem], *, actor: str = "clearing:intake"
    ) -> list[IntakeOutcome]:
        """Take a batch of CDR payloads in, in order; one outcome per item. Does not commit."""
        now = self._clock.now()
        outcomes: list[IntakeOutcome | None] = [None] * len(items)
        rejections: list[tuple[int, IntakeItem, str, str, ParsedCdr | None, int | None]] = []
        parsed: list[tuple[int, IntakeItem, ParsedCdr]] = []
        for index, item in enumerate(items):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            try:
                parsed.append((index, item, parse_cdr(item.raw)))
            except RefusedPayload as exc:
                rejections.append((index, item, "invalid", exc.message, None, None))
        # The batch's lookups join clearing_cdrs with unnested keys: its statistics must follow its growth.
        await keep_statistics(session, ClearingCdrRow.__tablename__)
        existing = await self._existing(session, {cdr.key for _, _, cdr in parsed})
        fresh: list[tuple[int, IntakeItem, ParsedCdr]] = []
        in_batch: dict[CdrKey, tuple[IntakeItem, ParsedCdr]] = {}
        links: list[tuple[int, int]] = []
        # Replays of a CDR first seen earlier in this batch: they name its record (and link a store row to it) once
        # it is written, exactly as they would in a later batch.
        replays: list[tuple[int, CdrKey, int | None]] = []
        for index, item, cdr in parsed:
            known = existing.get(cdr.key)
            first = in_batch.get(cdr.key)
            if known is not None or first is not None:
                same = known.content_hash if known is not None else first[1].content_hash if first else None
                if same == cdr.content_hash:
                    outcomes[index] = IntakeOutcome(
                        status="duplicate",
                        cdr=cdr.label,
                        record_id=known.id if known else None,
                        message="already taken in with the same content",
                    )
                    if known is not None and item.store_row_id is not None and known.store_row_id is None:
                        links.append((known.id, item.store_row_id))
                    if known is None and first is not None:
                        linked = item.store_row_id if first[0].store_row_id is None else None
                        replays.append((index, cdr.key, linked))
                else:
                    message = (
                        f"CDR {cdr.label} was already taken in with different content; CDRs cannot be changed, "
                        "send a credit CDR with a new id (mod_cdrs §10.1.1)"
                    )
                    rejections.append((index, item, "conflict", message, cdr, known.id if known else None))
                continue
            in_batch[cdr.key] = (item, cdr)
            fresh.append((index, item, cdr))

        snapshot = await Snapshot.load(session, [cdr for _, _, cdr in fresh])
        assessed: list[tuple[int, IntakeItem, _Assessed]] = []
        for position, (index, item, cdr) in enumerate(fresh):
            if position % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            assessed.append((index, item, self._assess(cdr, snapshot, now)))
        by_key = {entry.cdr.key: entry for _, _, entry in assessed}
        for _, item, entry in assessed:
            self._intake_events(entry, item, actor, by_key)

        ids = await self._insert_records(session, assessed, now)
        raced: list[tuple[int, IntakeItem, ParsedCdr]] = []
        for index, item, entry in assessed:
            record_id = ids.get(entry.cdr.key)
            if record_id is None:
                raced.append((index, item, entry.cdr))
                continue
            entry.known.record_id = record_id
            outcomes[index] = IntakeOutcome(
                status="accepted",
                cdr=entry.cdr.label,
                record_id=record_id,
                validation_state=entry.evaluation.validation_state,
                pricing_state=entry.evaluation.price.outcome,
            )
        for index, key, store_row_id in replays:
            record_id = ids.get(key)
            replayed = outcomes[index]
            if record_id is not None and replayed is not None:
                outcomes[index] = msgspec.structs.replace(replayed, record_id=record_id)
                if store_row_id is not None:
                    links.append((record_id, store_row_id))
        rejections = [
            (index, item, reason, message, refused,
             ids.get(refused.key) if record_id is None and refused is not None else record_id)
            for index, item, reason, message, refused, record_id in rejections
        ]  # fmt: skip
        written = [(entry, ids[entry.cdr.key]) for _, _, entry in assessed if entry.cdr.key in ids]
        await self._write_details(session, written, now)
        await self._link_credits(session, written, now, actor)
        for record_id, store_row_id in links:
            await session.execute(
                update(ClearingCdrRow)
                .where(ClearingCdrRow.id == record_id, ClearingCdrRow.store_row_id.is_(None))
                .values(store_row_id=store_row_id)
            )
        if raced:  # another process took the same CDR in between our read and our insert
            again = await self._existing(session, {cdr.key for _, _, cdr in raced})
            for index, item, cdr in raced:
                other = again.get(cdr.key)
                if other is not None and other.content_hash == cdr.content_hash:
                    outcomes[index] = IntakeOutcome(status="duplicate", cdr=cdr.label, record_id=other.id)
                else:
                    message = f"CDR {cdr.label} was taken in concurrently with different content"
                    rejections.append((index, item, "conflict", message, cdr, other.id if other else None))
        for index, item, reason, message, refused, record_id in rejections:
            await self._reject(session, item, reason, message, refused, record_id, now)
            outcomes[index] = IntakeOutcome(
                status=reason, cdr=refused.label if refused else None, record_id=record_id, message=message
            )
        waiting = sorted(
            {c.record_id for _, _, entry in assessed for c in entry.waiting_credits if c.record_id is not None}
        )
        if waiting:
            await self.recheck(session, waiting, actor=actor, reason="the CDR it credits arrived")
        return [outcome for outcome in outcomes if outcome is not None]

    def _intake_events(
        self, entry: _Assessed, item: IntakeItem, actor: str, by_key: Mapping[CdrKey, _Assessed]
    ) -> None:
        delivery = "received" if item.source == "store" else "imported"
        where = (
            f"the hub's CDR store (cdrs row {item.store_row_id})"
            if item.source == "store"
            else f"{item.source} {item.source_ref or ''}".strip()
        )
        entry.values["delivery_state"] = delivery
        entry.values["commercial_state"] = "pending"
        entry.values["settlement_state"] = "unsettled"
        entry.events += [
            self._event(
                Dimension.DELIVERY,
                None,
                delivery,
                actor,
                f"taken in from {where}",
                content_hash=entry.cdr.content_hash,
                commercial="pending",
                settlement="unsettled",
            ),
            self._event(
                Dimension.VALIDATION,
                "pending",
                entry.evaluation.validation_state,
                actor,
                _validation_reason(entry.evaluation.findings),
            ),
            self._event(
                Dimension.PRICING,
                "pending",
                entry.evaluation.price.outcome,
                actor,
                _pricing_reason(entry.evaluation.price),
            ),
        ]
        if entry.waiting_credits:
            credit = entry.waiting_credits[0]
            entry.values["commercial_state"] = "credited"
            entry.events.append(
                self._event(
                    Dimension.COMMERCIAL, "pending", "credited", actor, f"credit CDR {credit.label} arrived before it"
                )
            )
        if entry.credits_now and entry.original is not None and entry.original.key in by_key:
            # The original is in this batch too: it is written credited.
            target = by_key[entry.original.key]
            if target.values.get("commercial_state", "pending") == "pending":
                target.values["commercial_state"] = "credited"
                target.events.append(
                    self._event(
                        Dimension.COMMERCIAL, "pending", "credited", actor, f"credited by credit CDR {entry.cdr.label}"
                    )
                )

    async def _insert_records(
        self, session: AsyncSession, assessed: Sequence[tuple[int, IntakeItem, _Assessed]], now: datetime
    ) -> dict[CdrKey, int]:
        if not assessed:
            return {}
        rows = [
            {
                "country_code": entry.cdr.key[0],
                "party_id": entry.cdr.key[1],
                "cdr_id": entry.cdr.key[2],
                "raw": entry.cdr.raw,
                "content_hash": entry.cdr.content_hash,
                "source": item.source,
                "source_ref": _fit(item.source_ref, 255),
                "store_row_id": item.store_row_id,
                "received_at": now,
                **entry.values,
            }
            for _, item, entry in assessed
        ]
        model = ClearingCdrRow
        table = _table(model)
        statement = (
            _insert(session, model)
            .on_conflict_do_nothing()
            .returning(table.c.id, table.c.country_code, table.c.party_id, table.c.cdr_id)
        )
        result = await session.execute(statement, rows)
        return {(row.country_code, row.party_id, row.cdr_id): row.id for row in result}

    async def _write_details(
        self, session: AsyncSession, written: Sequence[tuple[_Assessed, int]], now: datetime
    ) -> None:
        findings = [
            {"record_id": record_id, "code": f.code, "severity": str(f.severity), "message": f.message,
             "pointer": f.pointer}
            for entry, record_id in written
            for f in entry.evaluation.findings
        ]  # fmt: skip
        checks = [_price_check_values(record_id, entry.evaluation.price, now) for entry, record_id in written]
        events = [
            {**event, "record_id": record_id, "at": now} for entry, record_id in written for event in entry.events
        ]
        for model, rows in (
            (ClearingFindingRow, findings),
            (ClearingPriceCheckRow, checks),
            (ClearingEventRow, events),
        ):
            if rows:
                await session.execute(insert(_table(model)), rows)

    async def _link_credits(
        self, session: AsyncSession, written: Sequence[tuple[_Assessed, int]], now: datetime, actor: str
    ) -> None:
        """Point credit CDRs at the records they credit, and mark stored originals credited."""
        in_batch = {entry.cdr.key for entry, _ in written}
        for entry, record_id in written:
            original = entry.original
            if original is None or original.record_id is None:
                continue
            if entry.values.get("credits_record_id") is None:
                await session.execute(
                    update(ClearingCdrRow)
                    .where(ClearingCdrRow.id == record_id)
                    .values(credits_record_id=original.record_id)
                )
            if entry.credits_now and original.key not in in_batch:
                await self._mark_credited(session, original.record_id, entry.cdr.label, now, actor)

    async def _mark_credited(self, session: AsyncSession, record_id: int, by: str, now: datetime, actor: str) -> None:
        current = await session.scalar(
            select(ClearingCdrRow.commercial_state).where(ClearingCdrRow.id == record_id).with_for_update()
        )
        if current is None or current in ("credited", "written_off"):
            return
        await session.execute(
            update(ClearingCdrRow).where(ClearingCdrRow.id == record_id).values(commercial_state="credited")
        )
        await session.execute(
            insert(_table(ClearingEventRow)),
            [{"record_id": record_id, "at": now,
              **self._event(Dimension.COMMERCIAL, current, "credited", actor, f"credited by credit CDR {by}")}],
        )  # fmt: skip

    async def _reject(  # noqa: PLR0917 - one rejection, as take_in collected it
        self,
        session: AsyncSession,
        item: IntakeItem,
        reason: str,
        message: str,
        cdr: ParsedCdr | None,
        record_id: int | None,
        now: datetime,
    ) -> None:
        digest = cdr.content_hash if cdr is not None else hashlib.sha256(item.raw).hexdigest()
        key = cdr.key if cdr is not None else (None, None, None)
        model = ClearingRejectionRow
        earlier = (
            await session.execute(
                select(model.id, model.country_code, model.party_id, model.cdr_id, model.store_row_id).where(
                    model.content_hash == digest, model.reason == reason
                )
            )
        ).all()
        for row in earlier:
            if (row.country_code, row.party_id, row.cdr_id) == key and (
                item.store_row_id is None or row.store_row_id in (None, item.store_row_id)
            ):
                await session.execute(
                    update(model)
                    .where(model.id == row.id)
                    .values(
                        attempts=model.attempts + 1,
                        last_attempt_at=now,
                        store_row_id=row.store_row_id or item.store_row_id,
                    )
                )
                return
        await session.execute(
            insert(model).values(
                received_at=now,
                last_attempt_at=now,
                attempts=1,
                source=item.source,
                source_ref=_fit(item.source_ref, 255),
                store_row_id=item.store_row_id,
                country_code=key[0],
                party_id=key[1],
                cdr_id=key[2],
                reason=reason,
                message=message,
                raw=item.raw,
                content_hash=digest,
                existing_record_id=record_id,
            )
        )

    # ---- the hub's store as a source ------------------------------------------------------------------------------

    async def sync_from_store(
        self,
        session: AsyncSession,
        limit: int = DEFAULT_BATCH_SIZE,
        *,
        after: int = 0,
        actor: str = "clearing:sync",
    ) -> IntakeSummary:
        """Take in up to ``limit`` stored CDRs (oldest first, ``cdrs.id`` above ``after``) that no record or rejection
        names yet. One batch; does not commit. ``last_store_row_id`` in the summary is the cursor for the next call.
        """
        cdrs = CdrRow
        taken = exists().where(ClearingCdrRow.store_row_id == cdrs.id)
        refused = exists().where(ClearingRejectionRow.store_row_id == cdrs.id)
        rows = (
            await session.execute(
                select(cdrs.id, cdrs.data).where(cdrs.id > after, ~taken, ~refused).order_by(cdrs.id).limit(limit)
            )
        ).all()
        summary = IntakeSummary()
        if not rows:
            return summary
        items = [IntakeItem(row.data, "store", f"cdrs:{row.id}", row.id) for row in rows]
        summary.add(await self.take_in(session, items, actor=actor))
        summary.last_store_row_id = rows[-1].id
        return summary

    # ---- re-checking, reading, deciding ---------------------------------------------------------------------------

    async def recheck(
        self, session: AsyncSession, record_ids: Sequence[int], *, actor: str, reason: str = "re-checked"
    ) -> list[IntakeOutcome]:
        """Match, validate and price stored records again (new sessions, tokens or tariffs may have arrived).

        Findings and the price check are replaced; every state that changes gets an event. Does not commit.
        """
        now = self._clock.now()
        model = ClearingCdrRow
        rows = (
            await session.execute(
                select(model.id, model.raw, model.validation_state, model.pricing_state, model.commercial_state)
                .where(model.id.in_(record_ids))
                .order_by(model.id)
            )
        ).all()
        parsed = [(row, parse_cdr(row.raw)) for row in rows]
        snapshot = await Snapshot.load(session, [cdr for _, cdr in parsed])
        outcomes: list[IntakeOutcome] = []
        for row, cdr in parsed:
            entry = self._assess(cdr, snapshot, now)
            entry.known.record_id = row.id
            for dimension, before, after, why in (
                (Dimension.VALIDATION, row.validation_state, entry.evaluation.validation_state,
                 _validation_reason(entry.evaluation.findings)),
                (Dimension.PRICING, row.pricing_state, entry.evaluation.price.outcome,
                 _pricing_reason(entry.evaluation.price)),
            ):  # fmt: skip
                if before != after:
                    entry.events.append(self._event(dimension, before, after, actor, f"{reason}: {why}"))
            if entry.waiting_credits and row.commercial_state not in ("credited", "written_off"):
                entry.values["commercial_state"] = "credited"
                credit = entry.waiting_credits[0]
                entry.events.append(
                    self._event(
                        Dimension.COMMERCIAL, row.commercial_state, "credited", actor, f"credited by {credit.label}"
                    )
                )
            await session.execute(delete(ClearingFindingRow).where(ClearingFindingRow.record_id == row.id))
            await session.execute(delete(ClearingPriceCheckRow).where(ClearingPriceCheckRow.record_id == row.id))
            await session.execute(update(model).where(model.id == row.id).values(**entry.values))
            await self._write_details(session, [(entry, row.id)], now)
            await self._link_credits(session, [(entry, row.id)], now, actor)
            outcomes.append(
                IntakeOutcome(
                    status="rechecked",
                    cdr=cdr.label,
                    record_id=row.id,
                    validation_state=entry.evaluation.validation_state,
                    pricing_state=entry.evaluation.price.outcome,
                )
            )
        return outcomes

    async def _record_id(self, session: AsyncSession, country_code: str, party_id: str, cdr_id: str) -> int:
        model = ClearingCdrRow
        record_id = await session.scalar(
            select(model.id).where(
                model.country_code == ci_key(country_code),
                model.party_id == ci_key(party_id),
                model.cdr_id == ci_key(cdr_id),
            )
        )
        if record_id is None:
            raise UnknownRecordError(f"no clearing record for CDR {country_code}/{party_id}/{cdr_id}")
        return record_id

    async def recheck_cdr(
        self, session: AsyncSession, country_code: str, party_id: str, cdr_id: str, *, actor: str
    ) -> IntakeOutcome:
        record_id = await self._record_id(session, country_code, party_id, cdr_id)
        return (await self.recheck(session, [record_id], actor=actor))[0]

    async def report(self, session: AsyncSession, country_code: str, party_id: str, cdr_id: str) -> RecordReport:
        """The record, links, findings, price check and event history of one CDR; `UnknownRecordError` if none."""
        record_id = await self._record_id(session, country_code, party_id, cdr_id)
        record = (await session.execute(select(ClearingCdrRow).where(ClearingCdrRow.id == record_id))).scalar_one()
        findings = (
            await session.execute(
                select(ClearingFindingRow)
                .where(ClearingFindingRow.record_id == record_id)
                .order_by(ClearingFindingRow.id)
            )
        ).scalars()
        check = await session.get(ClearingPriceCheckRow, record_id)
        events = (
            await session.execute(
                select(ClearingEventRow).where(ClearingEventRow.record_id == record_id).order_by(ClearingEventRow.id)
            )
        ).scalars()
        summary = {
            column: getattr(record, column)
            for column in (
                "id", "country_code", "party_id", "cdr_id", "emsp_country_code", "emsp_party_id", "session_id",
                "credit", "credit_reference_id", "credits_record_id", "start_date_time", "end_date_time", "currency",
                "total_cost_excl_vat", "total_cost_incl_vat", "total_energy", "content_hash", "source", "source_ref",
                "store_row_id", "received_at", "checked_at", "session_match", "token_match", "location_match",
                "tariff_source", "delivery_state", "validation_state", "pricing_state", "commercial_state",
                "settlement_state", "error_count", "warning_count",
            )
        }  # fmt: skip
        price = None
        if check is not None:
            price = {
                column: getattr(check, column)
                for column in ("outcome", "checked_at", "tolerance", "time_zone", "tariff_source", "computed",
                               "differences", "explanation", "warnings", "error")
            }  # fmt: skip
        return RecordReport(
            record=summary,
            links=record.links,
            findings=[
                Finding(code=f.code, severity=f.severity, message=f.message, pointer=f.pointer) for f in findings
            ],
            price=price,
            events=[
                EventReport(
                    at=e.at,
                    dimension=e.dimension,
                    from_state=e.from_state,
                    to_state=e.to_state,
                    actor=e.actor,
                    reason=e.reason,
                    details=e.details,
                )
                for e in events
            ],
        )

    async def set_commercial_state(
        self,
        session: AsyncSession,
        country_code: str,
        party_id: str,
        cdr_id: str,
        target: str,
        *,
        actor: str,
        reason: str,
    ) -> None:
        """Approve, decline, credit or write off a CDR (`clearing.states`), with an event saying who and why."""
        record_id = await self._record_id(session, country_code, party_id, cdr_id)
        current = await session.scalar(
            select(ClearingCdrRow.commercial_state).where(ClearingCdrRow.id == record_id).with_for_update()
        )
        check_commercial_transition(current or "", target)
        await session.execute(
            update(ClearingCdrRow).where(ClearingCdrRow.id == record_id).values(commercial_state=target)
        )
        await session.execute(
            insert(_table(ClearingEventRow)),
            [{"record_id": record_id, "at": self._clock.now(),
              **self._event(Dimension.COMMERCIAL, current, target, actor, reason)}],
        )  # fmt: skip

    async def preflight(
        self,
        session: AsyncSession,
        cdr: bytes,
        tariffs: bytes | None = None,
        *,
        time_zone: str | None = None,
    ) -> CheckReport:
        """Validate and price a CDR with everything the database knows, writing nothing (no record, no event).

        A CDR already taken in is compared with the others as a new one would be: if it is the same CDR, the
        duplicate rules do not count it against itself.
        """
        parsed = parse_cdr(cdr, require_key=False)
        snapshot = await Snapshot.load(session, [parsed])
        store = snapshot.facts_for(parsed)
        resolution = (
            resolve_tariffs(parsed, given=given_tariffs(tariffs))
            if tariffs is not None
            else snapshot.resolve_tariffs(parsed)
        )
        evaluation = evaluate(
            parsed,
            tariffs=resolution,
            store=store,
            now=self._clock.now(),
            tolerance=self.tolerance,
            time_zone=time_zone,
        )
        return report_of(parsed, evaluation, store_checked=True)


# --- module-level jobs ---------------------------------------------------------------------------------------------


async def sync_from_store(
    session: AsyncSession,
    limit: int = DEFAULT_BATCH_SIZE,
    *,
    clock: Clock | None = None,
    after: int = 0,
    tolerance: Decimal = DEFAULT_TOLERANCE,
) -> IntakeSummary:
    """Take in up to ``limit`` stored CDRs not taken in yet (one batch, in the caller's transaction)."""
    service = ClearingService(clock or SystemClock(), tolerance=tolerance)
    return await service.sync_from_store(session, limit, after=after)


async def run_sync(
    sessions: async_sessionmaker[AsyncSession],
    service: ClearingService,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    progress: Callable[[IntakeSummary], None] | None = None,
    actor: str = "clearing:sync",
) -> IntakeSummary:
    """Take in every stored CDR not taken in yet, one transaction per batch; idempotent, safe to run twice.

    Stops after ``limit`` CDRs when given. ``progress`` is called with each batch's summary.
    """
    total = IntakeSummary()
    cursor = 0
    while limit is None or total.seen < limit:
        size = batch_size if limit is None else min(batch_size, limit - total.seen)
        async with sessions.begin() as session:
            batch = await service.sync_from_store(session, size, after=cursor, actor=actor)
        if batch.seen == 0:
            break
        _merge(total, batch)
        cursor = batch.last_store_row_id or cursor
        total.last_store_row_id = cursor
        if progress is not None:
            progress(batch)
        if batch.seen < size:
            break
    return total


def _merge(total: IntakeSummary, batch: IntakeSummary) -> None:
    total.seen += batch.seen
    total.accepted += batch.accepted
    total.duplicates += batch.duplicates
    total.conflicts += batch.conflicts
    total.invalid += batch.invalid
    for mine, theirs in ((total.validation, batch.validation), (total.pricing, batch.pricing)):
        for state, count in theirs.items():
            mine[state] = mine.get(state, 0) + count


# --- files ---------------------------------------------------------------------------------------------------------


def _documents(buffer: bytes | mmap.mmap | memoryview) -> tuple[int, Iterator[bytes]]:
    """(count, payloads) of a JSON document: a list of CDRs, one CDR, or an OCPI envelope whose ``data`` is either."""
    view = memoryview(buffer)
    start = 0
    while start < len(view) and view[start] in b" \t\r\n\xef\xbb\xbf":
        start += 1
    if start < len(view) and view[start] == ord("["):
        raws = _RAW_LIST.decode(view)
        return len(raws), (bytes(raw) for raw in raws)
    try:
        members = _ENVELOPE.decode(view)
    except msgspec.DecodeError as exc:
        raise RefusedPayload(f"the file is not JSON: {exc}") from None
    data = members.get("data")
    if data is not None and "status_code" in members:
        return _documents(bytes(data))
    return 1, iter([bytes(view).strip()])


def iter_file(path: Path) -> tuple[int, Iterator[bytes]]:
    """The CDR payloads in a file, and how many: JSON (a CDR, a list, an envelope) or JSON Lines (one per line).

    JSON Lines (``.jsonl``/``.ndjson``) is streamed; a JSON file is memory-mapped, so neither is read into memory
    as a whole.
    """
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open("rb") as handle:
            count = sum(1 for line in handle if line.strip())

        def lines() -> Iterator[bytes]:
            with path.open("rb") as handle:
                for line in handle:
                    if line.strip():
                        yield line.strip()

        return count, lines()
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            raise RefusedPayload("the file is empty")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return _documents(mapped)


def batches(payloads: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    """``payloads`` in lists of ``size`` (the last one shorter): an upload or a file is taken in batch by batch."""
    batch: list[bytes] = []
    for payload in payloads:
        batch.append(payload)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def import_file(
    sessions: async_sessionmaker[AsyncSession],
    service: ClearingService,
    path: Path,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
    actor: str = "clearing:import",
) -> IntakeSummary:
    """Take in every CDR of a file, one transaction per batch. Importing the same file again changes nothing.

    ``progress(done, total)`` is called after each batch. Raises `RefusedPayload` when the file is not JSON.
    """
    total_count, payloads = iter_file(path)
    summary = IntakeSummary(file_sha256=file_sha256(path))
    for batch in batches(payloads, batch_size):
        items = [IntakeItem(raw, "file", path.name) for raw in batch]
        async with sessions.begin() as session:
            outcomes = await service.take_in(session, items, actor=actor)
        summary.add(outcomes)
        if progress is not None:
            progress(summary.seen, total_count)
    return summary
