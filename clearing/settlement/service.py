"""Settlement: terms, periods, closing a period into statements, netting, disputes and adjustments (ADR 0208).

`SettlementService.close_period` is the heart:

1. lock: the period moves ``open`` → ``closing`` in its own transaction; a ``closed`` period is returned as it is
   (closing twice changes nothing), an earlier period that is not closed refuses the close;
2. one transaction streams the unsettled CDRs whose ``end_date_time`` is before the period's end, in batches of
   ``batch_size`` (keyset on the record id), so memory holds one batch plus one small accumulator per statement.
   CDRs from before the period's start are late (their period closed before they were settled) and are marked so.
   A CDR is included when its commercial state is approved or credited, when it is a credit CDR (pending or
   approved), or when it is pending past the terms' approval window (then approved here, with an event). Declined,
   written-off, disputed and still-pending CDRs of the period are listed, excluded, and stay unsettled;
3. adjustments not yet settled join their pair's statement; fee lines follow from the terms; each statement gets
   its totals, the engine version and a hash of its inputs (CDR keys and content hashes, amounts, terms), which is
   independent of the order and the moment of the close;
4. the period's netting is computed and checked (`clearing.settlement.netting`) and the period becomes ``closed``.

A crash during step 2-4 rolls the whole close back and leaves ``closing``; running it again redoes it. Step 2 starts
by locking the period row, so a concurrent close of the same period waits and then finds it closed.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import msgspec
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clearing.models import ClearingCdrRow, ClearingEventRow, ClearingPriceCheckRow
from clearing.settlement.models import (
    AdjustmentRow,
    DisputeRow,
    PeriodRow,
    StatementLineRow,
    StatementRow,
    TermsRow,
)
from clearing.settlement.netting import Gross, Netting, net
from clearing.settlement.terms import FeeRule, Terms, parse_party, round_amount
from clearing.states import check_commercial_transition
from hub.platform.clock import Clock

__all__ = [
    "ENGINE_VERSION",
    "CloseResult",
    "DisputeReport",
    "LineReport",
    "PeriodError",
    "SettlementService",
    "StatementReport",
    "month_bounds",
    "previous_month",
]

#: Changes whenever the settlement arithmetic changes; recorded on every statement.
ENGINE_VERSION: Final = "settlement/1"
DEFAULT_BATCH_SIZE: Final = 500
_ZERO: Final = Decimal(0)
_CANONICAL: Final = msgspec.json.Encoder(decimal_format="string", order="sorted")
_MODULUS: Final = 2**512
_DISPUTE_OUTCOMES: Final = {"credit": "credited", "adjustment": "adjusted", "rejection": "rejected"}


class PeriodError(ValueError):
    """A period that cannot be created, closed or read as asked; the message says why."""


class LineReport(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    kind: str
    included: bool
    note: str
    payer: str | None
    quantity: Decimal | None
    amount_excl_vat: Decimal
    amount_incl_vat: Decimal
    details: dict[str, Any] | None


class StatementReport(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    period: str
    cpo: str
    emsp: str
    currency: str
    cdr_count: int
    excluded_count: int
    total_energy: Decimal
    amount_excl_vat: Decimal
    amount_incl_vat: Decimal
    adjustments: Decimal
    fees_cpo: Decimal
    fees_emsp: Decimal
    payable: Decimal
    engine_version: str
    input_hash: str
    terms: dict[str, Any]
    lines: list[LineReport]


class CloseResult(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    state: str
    already_closed: bool
    statements: dict[str, str]
    netting: dict[str, Any]


class DisputeReport(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    cdr: str
    state: str
    opened_by: str
    opened_at: datetime
    reason: str
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None


def month_bounds(label: str) -> tuple[datetime, datetime]:
    """``"2026-01"`` → [2026-01-01, 2026-02-01) in UTC."""
    try:
        year, month = (int(part) for part in label.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except ValueError:
        raise PeriodError(f"period {label!r} is not YYYY-MM") from None
    return start, start + timedelta(days=calendar.monthrange(year, month)[1])


def previous_month(now: datetime) -> str:
    first = now.astimezone(UTC).replace(day=1)
    last = first - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


def _party(country_code: str, party_id: str) -> str:
    return f"{country_code}/{party_id}"


def _terms_of(row: TermsRow) -> Terms:
    return Terms(
        cpo=_party(row.cpo_country_code, row.cpo_party_id),
        emsp=_party(row.emsp_country_code, row.emsp_party_id),
        valid_from=row.valid_from,
        currency=row.currency,
        tolerance=row.tolerance,
        approval_window_days=row.approval_window_days,
        rounding=row.rounding,
        decimals=row.decimals,
        fees=msgspec.convert(row.fees, dict[str, FeeRule]),
    )


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value, builtin_types=(Decimal, datetime))


@dataclass(frozen=True, slots=True)
class _Period:
    id: int
    label: str
    start: datetime
    end: datetime


@dataclass(slots=True)
class _Pending:
    """Writes of one batch of the close, made in three statements instead of three per CDR."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    settled: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    terms: dict[tuple[str, str], tuple[int | None, Terms]] = field(default_factory=dict)


@dataclass(slots=True)
class _Accumulator:
    """One statement while its period closes: running totals and the multiset digest of its lines.

    The line digests are added up modulo 2**512 (SHA-512 of each line's canonical inputs), so the digest is the same
    in any order and memory stays constant however many lines the statement has.
    """

    statement_id: int
    terms_id: int | None
    terms: Terms
    position: int = 0
    cdr_count: int = 0
    excluded_count: int = 0
    sessions: int = 0
    energy: Decimal = _ZERO
    excl: Decimal = _ZERO
    incl: Decimal = _ZERO
    adjustments: Decimal = _ZERO
    fees: dict[str, Decimal] = field(default_factory=lambda: {"cpo": _ZERO, "emsp": _ZERO})
    digest_sum: int = 0
    line_count: int = 0

    def next_position(self) -> int:
        self.position += 1
        return self.position

    def digest(self, value: Any) -> None:
        line = int.from_bytes(hashlib.sha512(_CANONICAL.encode(value)).digest(), "big")
        self.digest_sum = (self.digest_sum + line) % _MODULUS
        self.line_count += 1


def _outcome(check: ClearingPriceCheckRow | None, tolerance: Decimal | None) -> str | None:
    """The verification outcome, re-sorted with the terms' tolerance when the terms set one."""
    if check is None:
        return None
    if tolerance is None or check.outcome not in ("matched", "within_tolerance", "mismatch"):
        return check.outcome
    differences = [abs(Decimal(d["difference"])) for d in check.differences or ()]
    if not differences or max(differences) == 0:
        return "matched"
    return "within_tolerance" if max(differences) <= tolerance else "mismatch"


class SettlementService:
    """Terms, periods, statements, netting and disputes; methods take the caller's session and do not commit,
    except `close_period`, which owns its transactions."""

    def __init__(self, clock: Clock, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self._clock = clock
        self.batch_size = batch_size

    # ---- terms ----------------------------------------------------------------------------------------------------

    async def set_terms(self, session: AsyncSession, terms: Terms, *, actor: str) -> int:
        """Record a version of the pair's terms (replacing one with the same ``valid_from``)."""
        terms.check()
        cpo, emsp = parse_party(terms.cpo), parse_party(terms.emsp)
        valid_from = terms.valid_from.astimezone(UTC)
        existing = await session.scalar(
            select(TermsRow).where(
                TermsRow.cpo_country_code == cpo[0],
                TermsRow.cpo_party_id == cpo[1],
                TermsRow.emsp_country_code == emsp[0],
                TermsRow.emsp_party_id == emsp[1],
                TermsRow.valid_from == valid_from,
            )
        )
        row = existing or TermsRow(
            cpo_country_code=cpo[0],
            cpo_party_id=cpo[1],
            emsp_country_code=emsp[0],
            emsp_party_id=emsp[1],
            valid_from=valid_from,
        )
        row.currency = terms.currency.upper()
        row.tolerance = terms.tolerance
        row.approval_window_days = terms.approval_window_days
        row.rounding = terms.rounding
        row.decimals = terms.decimals
        row.fees = _builtins(terms.fees)
        row.created_at = self._clock.now()
        row.created_by = actor
        session.add(row)
        await session.flush()
        return row.id

    async def list_terms(self, session: AsyncSession) -> list[Terms]:
        rows = await session.scalars(
            select(TermsRow).order_by(
                TermsRow.cpo_country_code,
                TermsRow.cpo_party_id,
                TermsRow.emsp_country_code,
                TermsRow.emsp_party_id,
                TermsRow.valid_from,
            )
        )
        return [_terms_of(row) for row in rows]

    async def terms_for(self, session: AsyncSession, cpo: str, emsp: str, at: datetime) -> tuple[int | None, Terms]:
        """The pair's terms in force at ``at``, or the defaults (no fees) with ``None`` as id."""
        (cpo_cc, cpo_pid), (emsp_cc, emsp_pid) = parse_party(cpo), parse_party(emsp)
        row = await session.scalar(
            select(TermsRow)
            .where(
                TermsRow.cpo_country_code == cpo_cc,
                TermsRow.cpo_party_id == cpo_pid,
                TermsRow.emsp_country_code == emsp_cc,
                TermsRow.emsp_party_id == emsp_pid,
                TermsRow.valid_from <= at,
            )
            .order_by(TermsRow.valid_from.desc())
            .limit(1)
        )
        if row is None:
            return None, Terms(cpo=cpo, emsp=emsp, valid_from=datetime(1970, 1, 1, tzinfo=UTC), currency="EUR")
        return row.id, _terms_of(row)

    # ---- periods --------------------------------------------------------------------------------------------------

    async def ensure_period(
        self, session: AsyncSession, label: str, start: datetime | None = None, end: datetime | None = None
    ) -> PeriodRow:
        """The period named ``label``, created if new: monthly from a YYYY-MM label, or [start, end) as given."""
        period = await session.scalar(select(PeriodRow).where(PeriodRow.label == label))
        if period is not None:
            if start is not None and (period.start, period.end) != (start, end):
                raise PeriodError(f"period {label} exists with other bounds ({period.start} to {period.end})")
            return period
        if start is None or end is None:
            start, end = month_bounds(label)
        if end <= start:
            raise PeriodError(f"period {label} ends before it starts")
        overlapping = await session.scalar(
            select(PeriodRow.label).where(PeriodRow.start < end, PeriodRow.end > start).limit(1)
        )
        if overlapping is not None:
            raise PeriodError(f"period {label} overlaps period {overlapping}")
        period = PeriodRow(label=label, start=start, end=end, state="open")
        session.add(period)
        await session.flush()
        return period

    async def _lock(self, sessions: async_sessionmaker[AsyncSession], label: str, actor: str) -> _Period | None:
        """Move the period to ``closing``; return None when it is already closed."""
        async with sessions() as session, session.begin():
            period = await self.ensure_period(session, label)
            if period.state == "closed":
                return None
            earlier = await session.scalar(
                select(PeriodRow.label).where(PeriodRow.start < period.start, PeriodRow.state != "closed").limit(1)
            )
            if earlier is not None:
                raise PeriodError(f"close period {earlier} first: periods close in order")
            # Conditional, so a close that finished meanwhile is not reopened (the WHERE is re-read after a wait).
            moved = await session.execute(
                update(PeriodRow)
                .where(PeriodRow.id == period.id, PeriodRow.state != "closed")
                .values(state="closing", closed_by=actor)
                .execution_options(synchronize_session=False)
            )
            if getattr(moved, "rowcount", 1) == 0:
                return None
            return _Period(period.id, period.label, period.start, period.end)

    async def close_period(
        self,
        sessions: async_sessionmaker[AsyncSession],
        label: str,
        *,
        actor: str = "clearing:settlement",
        progress: Callable[[int, int], None] | None = None,
    ) -> CloseResult:
        """Close the period into statements and netting; a closed period is returned unchanged (idempotent)."""
        period = await self._lock(sessions, label, actor)
        if period is None:
            async with sessions() as session:
                return await self._result(session, label, already_closed=True)
        async with sessions() as session, session.begin():
            # A concurrent close of the same period waits here for the first and then finds it closed.
            state = await session.scalar(select(PeriodRow.state).where(PeriodRow.id == period.id).with_for_update())
            if state == "closed":
                return await self._result(session, label, already_closed=True)
            await self._close(session, period, actor, progress)
        async with sessions() as session:
            return await self._result(session, label, already_closed=False)

    async def _result(self, session: AsyncSession, label: str, *, already_closed: bool) -> CloseResult:
        period = await session.scalar(select(PeriodRow).where(PeriodRow.label == label))
        if period is None:
            raise PeriodError(f"no period {label}")
        rows = await session.scalars(
            select(StatementRow).where(StatementRow.period_id == period.id).order_by(StatementRow.id)
        )
        statements = {
            f"{_party(r.cpo_country_code, r.cpo_party_id)}|{_party(r.emsp_country_code, r.emsp_party_id)}|{r.currency}":
            r.input_hash
            for r in rows
        }  # fmt: skip
        return CloseResult(
            period=label,
            state=period.state,
            already_closed=already_closed,
            statements=statements,
            netting=period.netting or {},
        )

    async def _event(  # noqa: PLR0917 - one event row
        self,
        session: AsyncSession,
        record_id: int,
        dimension: str,
        from_state: str | None,
        to_state: str,
        actor: str,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        await session.execute(
            insert(ClearingEventRow),
            [{"record_id": record_id, "at": self._clock.now(), "dimension": dimension, "from_state": from_state,
              "to_state": to_state, "actor": actor, "reason": reason, "details": details}],
        )  # fmt: skip

    async def _statement(  # noqa: PLR0917 - one statement key
        self,
        session: AsyncSession,
        period: _Period,
        open_statements: dict[tuple[str, str, str], _Accumulator],
        cpo: str,
        emsp: str,
        currency: str,
    ) -> _Accumulator:
        key = (cpo, emsp, currency)
        found = open_statements.get(key)
        if found is not None:
            return found
        terms_id, terms = await self.terms_for(session, cpo, emsp, period.start)
        (cpo_cc, cpo_pid), (emsp_cc, emsp_pid) = parse_party(cpo), parse_party(emsp)
        statement_id = await session.scalar(
            insert(StatementRow)
            .values(
                period_id=period.id, cpo_country_code=cpo_cc, cpo_party_id=cpo_pid, emsp_country_code=emsp_cc,
                emsp_party_id=emsp_pid, currency=currency, terms_id=terms_id, cdr_count=0, excluded_count=0,
                total_energy=_ZERO, amount_excl_vat=_ZERO, amount_incl_vat=_ZERO, adjustments=_ZERO, fees_cpo=_ZERO,
                fees_emsp=_ZERO, payable=_ZERO, engine_version=ENGINE_VERSION, input_hash="", terms={},
            )
            .returning(StatementRow.id)
        )  # fmt: skip
        found = open_statements[key] = _Accumulator(int(statement_id or 0), terms_id, terms)
        return found

    async def _eligibility(
        self, session: AsyncSession, record: ClearingCdrRow, terms: Terms, disputed: bool, actor: str
    ) -> tuple[bool, str]:
        """Whether the CDR settles now and why (a short code that also enters the hash)."""
        state = record.commercial_state
        if disputed:
            return False, "disputed"
        if record.credit:
            return (state in ("pending", "approved"), "credit" if state in ("pending", "approved") else state)
        if state in ("approved", "credited"):
            return True, state
        if state == "pending":
            deadline = record.received_at + timedelta(days=terms.approval_window_days)
            if deadline > self._clock.now():
                return False, "awaiting_approval"
            check_commercial_transition("pending", "approved")
            await session.execute(
                update(ClearingCdrRow).where(ClearingCdrRow.id == record.id).values(commercial_state="approved")
            )
            await self._event(
                session, record.id, "commercial", "pending", "approved", actor,
                f"approval window of {terms.approval_window_days} days passed on {deadline.isoformat()}",
            )  # fmt: skip
            return True, "auto_approved"
        return False, state

    async def _close(
        self,
        session: AsyncSession,
        period: _Period,
        actor: str,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        # A rerun after a crash starts from nothing: the crashed transaction left no statements behind.
        base = and_(
            ClearingCdrRow.settlement_state == "unsettled",
            ClearingCdrRow.end_date_time < period.end,
            ClearingCdrRow.emsp_country_code.is_not(None),
            ClearingCdrRow.emsp_party_id.is_not(None),
            ClearingCdrRow.currency.is_not(None),
        )
        total = await session.scalar(select(func.count()).select_from(ClearingCdrRow).where(base)) or 0
        open_statements: dict[tuple[str, str, str], _Accumulator] = {}
        disputed_ids = set(
            await session.scalars(select(DisputeRow.record_id).where(DisputeRow.state == "open"))
        )  # one id per open dispute: small
        last_id, done = 0, 0
        pending = _Pending()
        while True:
            rows = (
                await session.execute(
                    select(ClearingCdrRow, ClearingPriceCheckRow)
                    .outerjoin(ClearingPriceCheckRow, ClearingPriceCheckRow.record_id == ClearingCdrRow.id)
                    .where(base, ClearingCdrRow.id > last_id)
                    .order_by(ClearingCdrRow.id)
                    .limit(self.batch_size)
                )
            ).all()
            if not rows:
                break
            pending.lines, pending.settled, pending.events = [], [], []
            for record, check in rows:
                await self._cdr_line(
                    session, period, open_statements, record, check, record.id in disputed_ids, actor, pending
                )
            await self._write(session, pending)
            last_id = rows[-1][0].id
            done += len(rows)
            session.expunge_all()
            if progress is not None:
                progress(done, total)
        await self._adjustments(session, period, open_statements)
        gross: list[Gross] = []
        for (cpo, emsp, currency), acc in sorted(open_statements.items()):
            await self._fees(session, acc, currency)
            gross.append(await self._finish(session, period, acc, cpo, emsp, currency))
        netting: Netting = net(gross)
        await session.execute(
            update(PeriodRow)
            .where(PeriodRow.id == period.id)
            .values(state="closed", closed_at=self._clock.now(), closed_by=actor, netting=_builtins(netting))
        )

    @staticmethod
    async def _write(session: AsyncSession, pending: _Pending) -> None:
        if pending.lines:
            await session.execute(insert(StatementLineRow), pending.lines)
        if pending.settled:
            await session.execute(
                update(ClearingCdrRow)
                .where(ClearingCdrRow.id.in_(pending.settled))
                .values(settlement_state="settled")
                .execution_options(synchronize_session=False)
            )
        if pending.events:
            await session.execute(insert(ClearingEventRow), pending.events)

    async def _cdr_line(  # noqa: PLR0917 - one CDR of the close
        self,
        session: AsyncSession,
        period: _Period,
        open_statements: dict[tuple[str, str, str], _Accumulator],
        record: ClearingCdrRow,
        check: ClearingPriceCheckRow | None,
        disputed: bool,
        actor: str,
        pending: _Pending,
    ) -> None:
        end, currency = record.end_date_time, record.currency
        if end is None or currency is None:  # the query leaves these out
            return
        late = end < period.start
        cpo = _party(record.country_code.upper(), record.party_id.upper())
        emsp = _party((record.emsp_country_code or "").upper(), (record.emsp_party_id or "").upper())
        if (cpo, emsp) not in pending.terms:
            pending.terms[cpo, emsp] = await self.terms_for(session, cpo, emsp, period.start)
        included, why = await self._eligibility(session, record, pending.terms[cpo, emsp][1], disputed, actor)
        if not included and late:
            return  # listed in its own period already; it settles when it becomes eligible
        acc = await self._statement(session, period, open_statements, cpo, emsp, currency.upper())
        terms = acc.terms
        stated_excl = record.total_cost_excl_vat or _ZERO
        stated_incl = record.total_cost_incl_vat if record.total_cost_incl_vat is not None else stated_excl
        computed = (check.computed or {}).get("total_cost") if check is not None else None
        sign = -1 if record.credit else 1
        recomputed_excl = sign * Decimal(computed["excl_vat"]) if computed else None
        recomputed_incl = (
            sign * Decimal(computed["incl_vat"]) if computed and computed.get("incl_vat") is not None else None
        )
        energy = sign * abs(record.total_energy or _ZERO)
        amount_excl = round_amount(stated_excl, terms.rounding, terms.decimals)
        amount_incl = round_amount(stated_incl, terms.rounding, terms.decimals)
        details = {
            "cdr_id": record.cdr_id,
            "session_id": record.session_id,
            "credit": record.credit,
            "credit_reference_id": record.credit_reference_id,
            "start_date_time": record.start_date_time,
            "end_date_time": record.end_date_time,
            "energy": energy,
            "stated_excl_vat": stated_excl,
            "stated_incl_vat": stated_incl,
            "recomputed_excl_vat": recomputed_excl,
            "recomputed_incl_vat": recomputed_incl,
            "verification": _outcome(check, terms.tolerance),
            "late": late,
            "content_hash": record.content_hash,
        }
        acc.digest({"kind": "cdr", "key": [cpo, record.cdr_id], "included": included, "why": why,
                    **{k: v for k, v in details.items() if k not in ("start_date_time", "end_date_time")},
                    "amount_excl_vat": amount_excl, "amount_incl_vat": amount_incl})  # fmt: skip
        pending.lines.append(
            {"statement_id": acc.statement_id, "position": acc.next_position(), "kind": "cdr",
             "record_id": record.id, "included": included, "note": why + (", late" if late else ""), "payer": None,
             "quantity": energy, "amount_excl_vat": amount_excl if included else _ZERO,
             "amount_incl_vat": amount_incl if included else _ZERO, "details": _builtins(details)}
        )  # fmt: skip
        if not included:
            acc.excluded_count += 1
            return
        acc.cdr_count += 1
        acc.sessions += sign
        acc.energy += energy
        acc.excl += amount_excl
        acc.incl += amount_incl
        pending.settled.append(record.id)
        pending.events.append(
            {"record_id": record.id, "at": self._clock.now(), "dimension": "settlement", "from_state": "unsettled",
             "to_state": "settled", "actor": actor,
             "reason": f"settled in period {period.label}" + (" (late)" if late else ""),
             "details": {"period": period.label, "statement_id": acc.statement_id}}
        )  # fmt: skip

    async def _adjustments(
        self, session: AsyncSession, period: _Period, open_statements: dict[tuple[str, str, str], _Accumulator]
    ) -> None:
        rows = list(
            await session.scalars(
                select(AdjustmentRow).where(AdjustmentRow.period_id.is_(None)).order_by(AdjustmentRow.id)
            )
        )
        for row in rows:
            cpo = _party(row.cpo_country_code, row.cpo_party_id)
            emsp = _party(row.emsp_country_code, row.emsp_party_id)
            acc = await self._statement(session, period, open_statements, cpo, emsp, row.currency)
            amount = round_amount(row.amount, acc.terms.rounding, acc.terms.decimals)
            cdr_id = None
            if row.record_id is not None:
                cdr_id = await session.scalar(select(ClearingCdrRow.cdr_id).where(ClearingCdrRow.id == row.record_id))
            acc.adjustments += amount
            acc.digest({"kind": "adjustment", "cdr_id": cdr_id, "amount": amount, "reason": row.reason})
            await session.execute(
                insert(StatementLineRow),
                [{"statement_id": acc.statement_id, "position": acc.next_position(), "kind": "adjustment",
                  "record_id": row.record_id, "included": True, "note": row.reason, "payer": None, "quantity": None,
                  "amount_excl_vat": amount, "amount_incl_vat": amount,
                  "details": {"adjustment_id": row.id, "dispute_id": row.dispute_id, "cdr_id": cdr_id,
                              "by": row.created_by}}],
            )  # fmt: skip
            await session.execute(update(AdjustmentRow).where(AdjustmentRow.id == row.id).values(period_id=period.id))

    async def _fees(self, session: AsyncSession, acc: _Accumulator, currency: str) -> None:
        terms = acc.terms
        if terms.currency != currency:
            return  # fees are agreed in the terms' currency; statements in other currencies carry none
        quantities = {"per_session": Decimal(acc.sessions), "per_kwh": acc.energy, "percent": acc.excl,
                      "per_period": Decimal(1)}  # fmt: skip
        for kind in ("per_session", "per_kwh", "percent", "per_period"):
            rule = terms.fees.get(kind)
            if rule is None:
                continue
            quantity = quantities[kind]
            raw = quantity * rule.rate / (100 if kind == "percent" else 1)
            amount = round_amount(raw, terms.rounding, terms.decimals)
            acc.fees[rule.payer] += amount
            acc.digest({"kind": "fee", "fee": kind, "payer": rule.payer, "rate": rule.rate, "quantity": quantity,
                        "amount": amount})  # fmt: skip
            await session.execute(
                insert(StatementLineRow),
                [{"statement_id": acc.statement_id, "position": acc.next_position(), "kind": "fee",
                  "record_id": None, "included": True, "note": f"hub fee {kind} at {rule.rate}", "payer": rule.payer,
                  "quantity": quantity, "amount_excl_vat": amount, "amount_incl_vat": amount,
                  "details": {"fee": kind, "rate": rule.rate}}],
            )  # fmt: skip

    async def _finish(  # noqa: PLR0917 - one statement
        self, session: AsyncSession, period: _Period, acc: _Accumulator, cpo: str, emsp: str, currency: str
    ) -> Gross:
        terms = _builtins(acc.terms)
        header = {"engine_version": ENGINE_VERSION, "period": [period.label, period.start, period.end],
                  "cpo": cpo, "emsp": emsp, "currency": currency, "terms": terms}  # fmt: skip
        digest = hashlib.sha256(_CANONICAL.encode(_builtins(header)))
        digest.update(acc.digest_sum.to_bytes(64, "big"))
        digest.update(acc.line_count.to_bytes(8, "big"))
        payable = acc.incl + acc.adjustments
        await session.execute(
            update(StatementRow)
            .where(StatementRow.id == acc.statement_id)
            .values(
                cdr_count=acc.cdr_count, excluded_count=acc.excluded_count, total_energy=acc.energy,
                amount_excl_vat=acc.excl, amount_incl_vat=acc.incl, adjustments=acc.adjustments,
                fees_cpo=acc.fees["cpo"], fees_emsp=acc.fees["emsp"], payable=payable, input_hash=digest.hexdigest(),
                terms=terms,
            )
        )  # fmt: skip
        return Gross(
            creditor=cpo,
            debtor=emsp,
            currency=currency,
            amount=payable,
            fees_creditor=acc.fees["cpo"],
            fees_debtor=acc.fees["emsp"],
        )

    # ---- reading --------------------------------------------------------------------------------------------------

    async def period(self, session: AsyncSession, label: str) -> PeriodRow:
        period = await session.scalar(select(PeriodRow).where(PeriodRow.label == label))
        if period is None:
            raise PeriodError(f"no period {label}")
        return period

    async def statements(self, session: AsyncSession, label: str, party: str | None = None) -> list[StatementReport]:
        """The period's statements (with their lines), optionally only those where ``party`` is CPO or eMSP."""
        period = await self.period(session, label)
        query = select(StatementRow).where(StatementRow.period_id == period.id)
        if party is not None:
            cc, pid = parse_party(party)
            query = query.where(
                or_(
                    and_(StatementRow.cpo_country_code == cc, StatementRow.cpo_party_id == pid),
                    and_(StatementRow.emsp_country_code == cc, StatementRow.emsp_party_id == pid),
                )
            )
        reports: list[StatementReport] = []
        for row in (await session.scalars(query.order_by(StatementRow.id))).all():
            # Amounts come back at the column's 4 decimals; show them at the statement's rounding (same value).
            unit = Decimal(1).scaleb(-int((row.terms or {}).get("decimals", 2)))
            lines = await session.scalars(
                select(StatementLineRow)
                .where(StatementLineRow.statement_id == row.id)
                .order_by(StatementLineRow.position)
            )
            reports.append(
                StatementReport(
                    id=row.id, period=label, cpo=_party(row.cpo_country_code, row.cpo_party_id),
                    emsp=_party(row.emsp_country_code, row.emsp_party_id), currency=row.currency,
                    cdr_count=row.cdr_count, excluded_count=row.excluded_count, total_energy=row.total_energy,
                    amount_excl_vat=row.amount_excl_vat.quantize(unit),
                    amount_incl_vat=row.amount_incl_vat.quantize(unit), adjustments=row.adjustments.quantize(unit),
                    fees_cpo=row.fees_cpo.quantize(unit), fees_emsp=row.fees_emsp.quantize(unit),
                    payable=row.payable.quantize(unit), engine_version=row.engine_version,
                    input_hash=row.input_hash, terms=row.terms,
                    lines=[
                        LineReport(position=li.position, kind=li.kind, included=li.included, note=li.note,
                                   payer=li.payer, quantity=li.quantity,
                                   amount_excl_vat=li.amount_excl_vat.quantize(unit),
                                   amount_incl_vat=li.amount_incl_vat.quantize(unit), details=li.details)
                        for li in lines
                    ],
                )
            )  # fmt: skip
        return reports

    # ---- disputes -------------------------------------------------------------------------------------------------

    async def _record(self, session: AsyncSession, country_code: str, party_id: str, cdr_id: str) -> ClearingCdrRow:
        record = await session.scalar(
            select(ClearingCdrRow).where(
                func.upper(ClearingCdrRow.country_code) == country_code.upper(),
                func.upper(ClearingCdrRow.party_id) == party_id.upper(),
                ClearingCdrRow.cdr_id == cdr_id,
            )
        )
        if record is None:
            raise LookupError(f"no clearing record for CDR {country_code}/{party_id}/{cdr_id}")
        return record

    async def open_dispute(
        self, session: AsyncSession, country_code: str, party_id: str, cdr_id: str, *, actor: str, reason: str
    ) -> int:
        """Open a dispute on a CDR; it is held out of settlement until resolved. Does not commit."""
        record = await self._record(session, country_code, party_id, cdr_id)
        if await session.scalar(
            select(DisputeRow.id).where(DisputeRow.record_id == record.id, DisputeRow.state == "open")
        ):
            raise PeriodError(f"CDR {cdr_id} already has an open dispute")
        dispute_id = await session.scalar(
            insert(DisputeRow)
            .values(record_id=record.id, state="open", opened_at=self._clock.now(), opened_by=actor, reason=reason)
            .returning(DisputeRow.id)
        )
        await self._event(session, record.id, "dispute", None, "open", actor, reason, {"dispute_id": dispute_id})
        return int(dispute_id or 0)

    async def resolve_dispute(
        self,
        session: AsyncSession,
        dispute_id: int,
        outcome: str,
        *,
        actor: str,
        reason: str,
        amount: Decimal | None = None,
    ) -> DisputeReport:
        """Resolve by ``credit`` (a credit CDR intake linked to the disputed CDR), ``adjustment`` (``amount``, on the
        next statement; negative means the CPO pays back) or ``rejection`` (the CDR settles as sent)."""
        if outcome not in _DISPUTE_OUTCOMES:
            raise PeriodError(f"outcome {outcome!r} is not one of {', '.join(_DISPUTE_OUTCOMES)}")
        dispute = await session.scalar(select(DisputeRow).where(DisputeRow.id == dispute_id).with_for_update())
        if dispute is None:
            raise LookupError(f"no dispute {dispute_id}")
        if dispute.state != "open":
            raise PeriodError(f"dispute {dispute_id} is already {dispute.state}")
        record = await session.scalar(select(ClearingCdrRow).where(ClearingCdrRow.id == dispute.record_id))
        if record is None:
            raise LookupError(f"dispute {dispute_id} names no clearing record")
        details: dict[str, Any] = {"dispute_id": dispute_id}
        if outcome == "credit":
            credit = await session.scalar(
                select(ClearingCdrRow)
                .where(ClearingCdrRow.credits_record_id == record.id, ClearingCdrRow.credit.is_(True))
                .order_by(ClearingCdrRow.id)
                .limit(1)
            )
            if credit is None:
                raise PeriodError(f"no credit CDR credits {record.cdr_id} yet: take the credit CDR in first")
            dispute.credit_record_id = credit.id
            details["credit_cdr_id"] = credit.cdr_id
        elif outcome == "adjustment":
            if amount is None or record.emsp_country_code is None or record.emsp_party_id is None:
                raise PeriodError("an adjustment needs an amount and a CDR with an eMSP")
            session.add(
                AdjustmentRow(
                    dispute_id=dispute_id, record_id=record.id, cpo_country_code=record.country_code.upper(),
                    cpo_party_id=record.party_id.upper(), emsp_country_code=record.emsp_country_code.upper(),
                    emsp_party_id=record.emsp_party_id.upper(), currency=(record.currency or "EUR").upper(),
                    amount=amount, reason=reason, created_at=self._clock.now(), created_by=actor,
                )
            )  # fmt: skip
            details["amount"] = amount
        elif outcome == "rejection" and amount is not None:
            raise PeriodError("a rejection carries no amount")
        dispute.state = _DISPUTE_OUTCOMES[outcome]
        dispute.resolved_at = self._clock.now()
        dispute.resolved_by = actor
        dispute.resolution = reason
        await session.flush()
        await self._event(session, record.id, "dispute", "open", dispute.state, actor, reason, _builtins(details))
        return self._dispute_report(dispute, record)

    @staticmethod
    def _dispute_report(dispute: DisputeRow, record: ClearingCdrRow) -> DisputeReport:
        return DisputeReport(
            id=dispute.id,
            cdr=f"{record.country_code}/{record.party_id}/{record.cdr_id}",
            state=dispute.state,
            opened_by=dispute.opened_by,
            opened_at=dispute.opened_at,
            reason=dispute.reason,
            resolved_by=dispute.resolved_by,
            resolved_at=dispute.resolved_at,
            resolution=dispute.resolution,
        )

    async def disputes(self, session: AsyncSession, *, state: str | None = None) -> list[DisputeReport]:
        query = select(DisputeRow, ClearingCdrRow).join(ClearingCdrRow, ClearingCdrRow.id == DisputeRow.record_id)
        if state is not None:
            query = query.where(DisputeRow.state == state)
        return [self._dispute_report(d, r) for d, r in (await session.execute(query.order_by(DisputeRow.id))).all()]
