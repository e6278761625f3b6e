"""Read-only views of clearing for operator screens (the dashboard): settlement periods with their state and
statement count, clearing records (CDRs) with their state dimensions, newest first, and a matched CDR's pricing
explanation recomputed for display.

The single-object reads (one CDR's report, one period, its statements, disputes) stay with their services
(`clearing.intake.ClearingService`, `clearing.settlement.service.SettlementService`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.document import RefusedPayload, parse_cdr
from clearing.matching import Snapshot
from clearing.models import ClearingCdrRow
from clearing.pricing import InputError, PricingError, price_cdr
from clearing.settlement.models import PeriodRow, StatementRow
from clearing.settlement.terms import parse_party

__all__ = ["CdrSummary", "PeriodSummary", "explain_price", "list_cdrs", "list_periods", "statement_parties"]


class PeriodSummary(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    start: datetime
    end: datetime
    state: str
    closed_at: datetime | None
    closed_by: str | None
    statements: int


class CdrSummary(msgspec.Struct, frozen=True, kw_only=True):
    country_code: str
    party_id: str
    cdr_id: str
    emsp: str | None
    credit: bool
    end_date_time: datetime | None
    currency: str | None
    total_cost_incl_vat: Decimal | None
    total_energy: Decimal | None
    validation_state: str
    pricing_state: str
    commercial_state: str
    settlement_state: str
    error_count: int
    warning_count: int


async def list_periods(session: AsyncSession, *, limit: int = 100) -> list[PeriodSummary]:
    """Periods, the latest first, each with how many statements it has."""
    count = (
        select(func.count()).select_from(StatementRow).where(StatementRow.period_id == PeriodRow.id).scalar_subquery()
    )
    query = select(PeriodRow, count).order_by(PeriodRow.start.desc(), PeriodRow.id.desc()).limit(limit)
    return [
        PeriodSummary(
            label=period.label,
            start=period.start,
            end=period.end,
            state=period.state,
            closed_at=period.closed_at,
            closed_by=period.closed_by,
            statements=int(statements),
        )
        for period, statements in (await session.execute(query)).tuples()
    ]


async def statement_parties(session: AsyncSession, labels: list[str]) -> dict[str, list[str]]:
    """Per period label, the parties (``CC/PID``) that have a statement in it as CPO or eMSP, sorted; reads no lines."""
    query = (
        select(PeriodRow.label, StatementRow.cpo_country_code, StatementRow.cpo_party_id,
               StatementRow.emsp_country_code, StatementRow.emsp_party_id)
        .join(PeriodRow, PeriodRow.id == StatementRow.period_id)
        .where(PeriodRow.label.in_(labels))
    )  # fmt: skip
    found: dict[str, set[str]] = {label: set() for label in labels}
    for label, cpo_cc, cpo_pid, emsp_cc, emsp_pid in (await session.execute(query)).tuples():
        found[label] |= {f"{cpo_cc}/{cpo_pid}", f"{emsp_cc}/{emsp_pid}"}
    return {label: sorted(parties) for label, parties in found.items()}


async def list_cdrs(
    session: AsyncSession,
    *,
    party: str | None = None,
    cdr_id: str | None = None,
    pricing_state: str | None = None,
    validation_state: str | None = None,
    limit: int = 100,
) -> list[CdrSummary]:
    """Clearing records, the latest taken in first. ``party`` (``CC/PID``, `TermsError` if malformed) keeps the CDRs
    where it is the CPO or the eMSP; ``cdr_id`` matches the CDR id exactly."""
    query = select(ClearingCdrRow)
    if party is not None:
        cc, pid = parse_party(party)
        query = query.where(
            or_(
                # Stored as the CPO sent them; OCPI compares these case-insensitively.
                and_(func.upper(ClearingCdrRow.country_code) == cc, func.upper(ClearingCdrRow.party_id) == pid),
                and_(
                    func.upper(ClearingCdrRow.emsp_country_code) == cc, func.upper(ClearingCdrRow.emsp_party_id) == pid
                ),
            )
        )
    if cdr_id:
        query = query.where(ClearingCdrRow.cdr_id == cdr_id)
    if pricing_state:
        query = query.where(ClearingCdrRow.pricing_state == pricing_state)
    if validation_state:
        query = query.where(ClearingCdrRow.validation_state == validation_state)
    rows = await session.scalars(query.order_by(ClearingCdrRow.id.desc()).limit(limit))
    return [
        CdrSummary(
            country_code=row.country_code,
            party_id=row.party_id,
            cdr_id=row.cdr_id,
            emsp=f"{row.emsp_country_code}/{row.emsp_party_id}"
            if row.emsp_country_code and row.emsp_party_id
            else None,
            credit=row.credit,
            end_date_time=row.end_date_time,
            currency=row.currency,
            total_cost_incl_vat=row.total_cost_incl_vat,
            total_energy=row.total_energy,
            validation_state=row.validation_state,
            pricing_state=row.pricing_state,
            commercial_state=row.commercial_state,
            settlement_state=row.settlement_state,
            error_count=row.error_count,
            warning_count=row.warning_count,
        )
        for row in rows
    ]


async def explain_price(
    session: AsyncSession, country_code: str, party_id: str, cdr_id: str, *, time_zone: str
) -> dict[str, Any] | None:
    """The engine's lines, step and limit adjustments for a CDR, recomputed now with the tariffs clearing resolves for
    it and the time zone of its price check; None when there is no such record or it cannot be priced.

    The price check keeps this explanation only when the totals differ (ADR 0205: a match can be recomputed); an
    operator opening a matched CDR still wants to see how the price is made up.
    """
    raw = await session.scalar(
        select(ClearingCdrRow.raw).where(
            func.upper(ClearingCdrRow.country_code) == country_code.upper(),
            func.upper(ClearingCdrRow.party_id) == party_id.upper(),
            ClearingCdrRow.cdr_id == cdr_id,
        )
    )
    if raw is None:
        return None
    try:
        parsed = parse_cdr(raw)
    except RefusedPayload:
        return None
    if parsed.view is None:
        return None
    resolution = (await Snapshot.load(session, [parsed])).resolve_tariffs(parsed)
    if not resolution.tariffs:
        return None
    try:
        result = price_cdr(parsed.view, resolution.tariffs, time_zone)
    except (PricingError, InputError):
        return None
    keep = (Decimal, datetime)
    return {
        "lines": msgspec.to_builtins(result.lines, builtin_types=keep),
        "step_adjustments": msgspec.to_builtins(result.step_adjustments, builtin_types=keep),
        "limit_adjustments": msgspec.to_builtins(result.limit_adjustments, builtin_types=keep),
    }
