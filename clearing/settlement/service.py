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

VAT and currencies follow the pair's terms (ADR 0209): each CDR line's VAT comes from the agreement's VAT regime
(or, with none configured, from the CDR as stated), the statement's VAT is computed once on its taxable amount, and a
CDR or adjustment in another currency is converted into the terms' ``settlement_currency`` at the period's reference
rate, or settles in its own currency's statement when the terms ask for no conversion. A missing rate refuses the
close (`PeriodError` naming the pair); the rates used are recorded on the statement and enter its hash.

A crash during step 2-4 rolls the whole close back and leaves ``closing``; running it again redoes it. Step 2 starts
by locking the period row, so a concurrent close of the same period waits and then finds it closed.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, cast

import msgspec
from sqlalchemy import Table, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from clearing.models import ClearingCdrRow, ClearingEventRow, ClearingPriceCheckRow
from clearing.settlement.models import (
    AdjustmentRow,
    DisputeRow,
    PeriodRow,
    RateRow,
    StatementLineRow,
    StatementRow,
    TermsRow,
)
from clearing.settlement.netting import Gross, Netting, net
from clearing.settlement.terms import FeeRule, Terms, parse_party, plain, round_amount
from clearing.states import check_commercial_transition
from hub.platform.clock import Clock

__all__ = [
    "ENGINE_VERSION",
    "CloseResult",
    "DisputeReport",
    "LineReport",
    "PeriodError",
    "RateReport",
    "SettlementService",
    "StatementReport",
    "month_bounds",
    "previous_month",
]

#: Changes whenever the settlement arithmetic changes; recorded on every statement.
#: settlement/2 (ADR 0209): VAT per the agreement's regime, currency conversion at the period's reference rates.
ENGINE_VERSION: Final = "settlement/2"
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
    # ADR 0209: the VAT regime applied, its rate (percent), the statement's VAT, the note printed; the rates used.
    vat_regime: str = "as_stated"
    vat_rate: Decimal | None = None
    vat_amount: Decimal = _ZERO
    vat_note: str | None = None
    rates: dict[str, Any] = msgspec.field(default_factory=dict)


class RateReport(msgspec.Struct, frozen=True, kw_only=True):
    """A period's reference rate: 1 ``base`` = ``rate`` ``quote`` on ``rate_date``, from ``source``."""

    period: str
    base: str
    quote: str
    rate: Decimal
    rate_date: date
    source: str
    set_by: str
    set_at: datetime


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
        vat_regime=row.vat_regime,
        vat_rate=row.vat_rate,
        vat_note=row.vat_note,
        settlement_currency=row.settlement_currency,
        rate_source=row.rate_source,
    )


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value, builtin_types=(Decimal, datetime))


def _core(model: Any) -> Table:
    """A model's Core table: executemany through Core is several times faster than the ORM's bulk insert."""
    return cast("Table", model.__table__)


#: Columns the close never reads: deferred, so streaming a million records does not carry their payloads.
_UNUSED_IN_CLOSE: Final = (
    defer(ClearingCdrRow.raw),
    defer(ClearingCdrRow.links),
    defer(ClearingPriceCheckRow.explanation),
    defer(ClearingPriceCheckRow.warnings),
)


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
    # CDRs pending past their approval window, approved by this close: one UPDATE per batch, not one per CDR.
    approved: list[int] = field(default_factory=list)
    terms: dict[tuple[str, str], tuple[int | None, Terms]] = field(default_factory=dict)
    # The period's reference rates read so far, by (base, quote, source): few, read once per close.
    rates: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)


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
    # The reference rates this statement used ("USD/EUR" → rate, rate date, source): recorded on it (ADR 0209).
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)

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


def _line_amounts(terms: Terms, excl: Decimal, incl: Decimal) -> tuple[Decimal, Decimal]:
    """A line's amounts excl. and incl. VAT, rounded once by the terms' rule, under the terms' VAT regime (ADR 0209).

    ``excl`` and ``incl`` are unrounded (4 dp, already converted into the statement's currency). ``as_stated`` keeps
    the CDR's own VAT; ``domestic`` computes it at the rate on the rounded net line (the net is never reduced first:
    notes §3.2 "Never net amounts before computing VAT"); ``reverse_charge`` and ``outside_scope`` charge none.
    """
    amount_excl = round_amount(excl, terms.rounding, terms.decimals)
    if terms.vat_regime == "as_stated":
        return amount_excl, round_amount(incl, terms.rounding, terms.decimals)
    if terms.vat_regime == "domestic" and terms.vat_rate is not None:
        return amount_excl, amount_excl + round_amount(
            amount_excl * terms.vat_rate / 100, terms.rounding, terms.decimals
        )
    return amount_excl, amount_excl


def _currency(code: str, what: str) -> str:
    if len(code) != 3 or not code.isalpha():
        raise PeriodError(f"{what} {code!r} is not an ISO 4217 code")
    return code.upper()


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
        row.vat_regime = terms.vat_regime
        row.vat_rate = terms.vat_rate
        row.vat_note = terms.vat_note
        row.settlement_currency = terms.settlement_currency.upper() if terms.settlement_currency else None
        row.rate_source = terms.rate_source
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

    # ---- reference rates (ADR 0209) ---------------------------------------------------------------------------------

    async def set_rate(  # noqa: PLR0917 - one rate row
        self,
        session: AsyncSession,
        label: str,
        base: str,
        quote: str,
        rate: Decimal,
        rate_date: date,
        source: str,
        *,
        actor: str,
    ) -> RateReport:
        """Fix the period's reference rate 1 ``base`` = ``rate`` ``quote`` from ``source`` (replacing the same
        pair and source) while the period is not closed; a closed period's rates are fixed. Does not commit."""
        base, quote = _currency(base, "currency"), _currency(quote, "currency")
        if base == quote:
            raise PeriodError("a reference rate converts between two different currencies")
        if not rate.is_finite() or rate <= 0:
            raise PeriodError(f"the rate {rate} must be a positive number")
        source = source.strip()
        if not 1 <= len(source) <= 32:
            raise PeriodError("name the rate source (e.g. ECB), at most 32 characters")
        period = await self.ensure_period(session, label)
        if period.state == "closed":
            # Notes §1.5: "a rate date fixed per period"; the closed statements carry the rates they used.
            raise PeriodError(f"period {label} is closed: its reference rates are fixed")
        row = await session.scalar(
            select(RateRow).where(
                RateRow.period_id == period.id,
                RateRow.base_currency == base,
                RateRow.quote_currency == quote,
                RateRow.source == source,
            )
        )
        row = row or RateRow(period_id=period.id, base_currency=base, quote_currency=quote, source=source)
        row.rate, row.rate_date = rate, rate_date
        row.created_at, row.created_by = self._clock.now(), actor
        session.add(row)
        await session.flush()
        return self._rate_report(label, row)

    @staticmethod
    def _rate_report(label: str, row: RateRow) -> RateReport:
        return RateReport(
            period=label, base=row.base_currency, quote=row.quote_currency, rate=plain(row.rate),
            rate_date=row.rate_date, source=row.source, set_by=row.created_by, set_at=row.created_at,
        )  # fmt: skip

    async def rates(self, session: AsyncSession, label: str) -> list[RateReport]:
        period = await self.period(session, label)
        rows = await session.scalars(
            select(RateRow)
            .where(RateRow.period_id == period.id)
            .order_by(RateRow.base_currency, RateRow.quote_currency, RateRow.source)
        )
        return [self._rate_report(label, row) for row in rows]

    @staticmethod
    async def _rate(  # noqa: PLR0917 - one lookup
        session: AsyncSession, period: _Period, pending: _Pending, base: str, quote: str, source: str
    ) -> dict[str, Any]:
        """The period's rate base→quote from ``source``; refuses the close when there is none (ADR 0209)."""
        key = (base, quote, source)
        found = pending.rates.get(key)
        if found is None:
            row = await session.scalar(
                select(RateRow).where(
                    RateRow.period_id == period.id,
                    RateRow.base_currency == base,
                    RateRow.quote_currency == quote,
                    RateRow.source == source,
                )
            )
            if row is None:
                raise PeriodError(
                    f"no {base}/{quote} reference rate from {source} for period {period.label}: the agreement "
                    f"converts {base} into {quote}; set it with `ocpi-hub clearing rates set --period {period.label}"
                    f" --from {base} --to {quote} --rate R --date YYYY-MM-DD --source {source}`"
                )
            found = pending.rates[key] = {"rate": plain(row.rate), "rate_date": row.rate_date.isoformat(),
                                          "source": row.source}  # fmt: skip
        return found

    async def _target(
        self, session: AsyncSession, period: _Period, pending: _Pending, terms: Terms, currency: str
    ) -> tuple[str, dict[str, Any] | None]:
        """The statement currency of an amount in ``currency`` under ``terms``, and the rate to convert (or None)."""
        target = terms.settlement_currency.upper() if terms.settlement_currency else currency
        if target == currency:
            return currency, None
        return target, await self._rate(session, period, pending, currency, target, terms.rate_source or "")

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

    def _eligibility(
        self, record: ClearingCdrRow, terms: Terms, disputed: bool, actor: str, pending: _Pending
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
            pending.approved.append(record.id)
            pending.events.append(
                {"record_id": record.id, "at": self._clock.now(), "dimension": "commercial", "from_state": "pending",
                 "to_state": "approved", "actor": actor,
                 "reason": f"approval window of {terms.approval_window_days} days passed on {deadline.isoformat()}",
                 "details": None}
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
                    # The payload and the links are the bulk of a record and no line needs them.
                    .options(*_UNUSED_IN_CLOSE)
                    .where(base, ClearingCdrRow.id > last_id)
                    .order_by(ClearingCdrRow.id)
                    .limit(self.batch_size)
                )
            ).all()
            if not rows:
                break
            pending.lines, pending.settled, pending.events, pending.approved = [], [], [], []
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
        await self._adjustments(session, period, open_statements, pending)
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
        # Core executemany (not the ORM's bulk insert) and no session synchronisation: the batch's objects are
        # expunged right after, and evaluating each UPDATE against them cost more than the SQL.
        if pending.approved:
            await session.execute(
                update(ClearingCdrRow)
                .where(ClearingCdrRow.id.in_(pending.approved))
                .values(commercial_state="approved")
                .execution_options(synchronize_session=False)
            )
        if pending.lines:
            await session.execute(insert(_core(StatementLineRow)), pending.lines)
        if pending.settled:
            await session.execute(
                update(ClearingCdrRow)
                .where(ClearingCdrRow.id.in_(pending.settled))
                .values(settlement_state="settled")
                .execution_options(synchronize_session=False)
            )
        if pending.events:
            await session.execute(insert(_core(ClearingEventRow)), pending.events)

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
        included, why = self._eligibility(record, pending.terms[cpo, emsp][1], disputed, actor, pending)
        if not included and late:
            return  # listed in its own period already; it settles when it becomes eligible
        target, fx = await self._target(session, period, pending, pending.terms[cpo, emsp][1], currency.upper())
        acc = await self._statement(session, period, open_statements, cpo, emsp, target)
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
        # Converted before the line's one rounding (notes §3.4: round only where the statement line is produced).
        rate = fx["rate"] if fx is not None else Decimal(1)
        amount_excl, amount_incl = _line_amounts(terms, stated_excl * rate, stated_incl * rate)
        details: dict[str, Any] = {
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
            "vat_regime": terms.vat_regime,
            "vat_amount": amount_incl - amount_excl,
        }
        if fx is not None:
            acc.rates[f"{currency.upper()}/{target}"] = fx
            details |= {"original_currency": currency.upper(), "fx_rate": fx["rate"], "fx_rate_date": fx["rate_date"],
                        "fx_source": fx["source"]}  # fmt: skip
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
        self,
        session: AsyncSession,
        period: _Period,
        open_statements: dict[tuple[str, str, str], _Accumulator],
        pending: _Pending,
    ) -> None:
        rows = list(
            await session.scalars(
                select(AdjustmentRow).where(AdjustmentRow.period_id.is_(None)).order_by(AdjustmentRow.id)
            )
        )
        for row in rows:
            cpo = _party(row.cpo_country_code, row.cpo_party_id)
            emsp = _party(row.emsp_country_code, row.emsp_party_id)
            if (cpo, emsp) not in pending.terms:
                pending.terms[cpo, emsp] = await self.terms_for(session, cpo, emsp, period.start)
            currency = row.currency.upper()
            target, fx = await self._target(session, period, pending, pending.terms[cpo, emsp][1], currency)
            acc = await self._statement(session, period, open_statements, cpo, emsp, target)
            # Under a configured VAT regime an adjustment is a net price correction and joins the VAT base; with VAT
            # as stated it stays the amount entered, as before ADR 0209.
            raw = row.amount * (fx["rate"] if fx is not None else 1)
            amount, amount_incl = _line_amounts(acc.terms, raw, raw)
            conversion: dict[str, Any] = {}
            if fx is not None:
                acc.rates[f"{currency}/{target}"] = fx
                conversion = {"original_currency": currency, "original_amount": row.amount, "fx_rate": fx["rate"],
                              "fx_rate_date": fx["rate_date"], "fx_source": fx["source"]}  # fmt: skip
            cdr_id = None
            if row.record_id is not None:
                cdr_id = await session.scalar(select(ClearingCdrRow.cdr_id).where(ClearingCdrRow.id == row.record_id))
            acc.adjustments += amount
            acc.digest({"kind": "adjustment", "cdr_id": cdr_id, "amount": amount, "amount_incl_vat": amount_incl,
                        "reason": row.reason, **conversion})  # fmt: skip
            await session.execute(
                insert(StatementLineRow),
                [{"statement_id": acc.statement_id, "position": acc.next_position(), "kind": "adjustment",
                  "record_id": row.record_id, "included": True, "note": row.reason, "payer": None, "quantity": None,
                  "amount_excl_vat": amount, "amount_incl_vat": amount_incl,
                  "details": _builtins({"adjustment_id": row.id, "dispute_id": row.dispute_id, "cdr_id": cdr_id,
                                        "by": row.created_by, "vat_regime": acc.terms.vat_regime,
                                        "vat_amount": amount_incl - amount, **conversion})}],
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
        vat_amount, amount_incl = self._vat(acc)
        rates = dict(sorted(acc.rates.items())) or None
        header = {"engine_version": ENGINE_VERSION, "period": [period.label, period.start, period.end],
                  "cpo": cpo, "emsp": emsp, "currency": currency, "terms": terms,
                  "vat": [acc.terms.vat_regime, acc.terms.vat_rate, acc.terms.note], "rates": rates}  # fmt: skip
        digest = hashlib.sha256(_CANONICAL.encode(_builtins(header)))
        digest.update(acc.digest_sum.to_bytes(64, "big"))
        digest.update(acc.line_count.to_bytes(8, "big"))
        # Netting works on this payment amount, VAT included (notes §3.2: invoices stay gross, set-off on payment).
        payable = amount_incl + acc.adjustments
        await session.execute(
            update(StatementRow)
            .where(StatementRow.id == acc.statement_id)
            .values(
                cdr_count=acc.cdr_count, excluded_count=acc.excluded_count, total_energy=acc.energy,
                amount_excl_vat=acc.excl, amount_incl_vat=amount_incl, adjustments=acc.adjustments,
                fees_cpo=acc.fees["cpo"], fees_emsp=acc.fees["emsp"], payable=payable, input_hash=digest.hexdigest(),
                terms=terms, vat_regime=acc.terms.vat_regime, vat_rate=acc.terms.vat_rate, vat_amount=vat_amount,
                vat_note=acc.terms.note, rates=_builtins(rates),
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

    @staticmethod
    def _vat(acc: _Accumulator) -> tuple[Decimal, Decimal]:
        """The statement's VAT and its amount incl. VAT (``payable`` minus adjustments) under the terms' regime.

        ``domestic``: VAT once on the rate group's taxable amount, the rounded net lines plus the (net) adjustments,
        rounded by the terms' rule (notes §3.4, the EN 16931 breakdown); the lines' own VAT is indicative and may
        differ from it by the rounding of each line. ``as_stated``: the sum of the lines' stated VAT, adjustments
        gross as entered (the behaviour before ADR 0209). ``reverse_charge``, ``outside_scope``: none.
        """
        terms = acc.terms
        if terms.vat_regime == "as_stated":
            return acc.incl - acc.excl, acc.incl
        if terms.vat_regime == "domestic" and terms.vat_rate is not None:
            vat = round_amount((acc.excl + acc.adjustments) * terms.vat_rate / 100, terms.rounding, terms.decimals)
            return vat, acc.excl + vat
        return _ZERO, acc.excl

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
                    input_hash=row.input_hash, terms=row.terms, vat_regime=row.vat_regime, vat_rate=row.vat_rate,
                    vat_amount=row.vat_amount.quantize(unit), vat_note=row.vat_note, rates=row.rates or {},
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
