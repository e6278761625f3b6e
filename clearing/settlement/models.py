"""ORM models of settlement: commercial terms, periods, reference rates, statements and their lines, disputes,
adjustments (ADR 0208, 0209).

Money columns are ``NUMERIC(20, 4)`` (OCPI precision) and read back as `Decimal`; statement amounts are already
rounded by the terms' rule (ADR 0208 §rounding) and stored in the same type.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from clearing.models import JsonText
from hub.platform.db import Base, UtcDateTime

__all__ = [
    "AdjustmentRow",
    "DisputeRow",
    "PeriodRow",
    "RateRow",
    "StatementLineRow",
    "StatementRow",
    "TermsRow",
]

Amount = Numeric(20, 4)
#: Reference exchange rates carry more digits than amounts (ECB publishes up to 5 significant digits, others more).
Rate = Numeric(24, 10)


class TermsRow(Base):
    """Commercial terms between a CPO and an eMSP, effective from ``valid_from`` until the next version's."""

    __tablename__ = "clearing_terms"
    __table_args__ = (
        UniqueConstraint(
            "cpo_country_code",
            "cpo_party_id",
            "emsp_country_code",
            "emsp_party_id",
            "valid_from",
            name="uq_clearing_terms_pair_valid_from",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cpo_country_code: Mapped[str] = mapped_column(String(2))
    cpo_party_id: Mapped[str] = mapped_column(String(3))
    emsp_country_code: Mapped[str] = mapped_column(String(2))
    emsp_party_id: Mapped[str] = mapped_column(String(3))
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    currency: Mapped[str] = mapped_column(String(3))
    tolerance: Mapped[Decimal | None] = mapped_column(Amount)
    approval_window_days: Mapped[int] = mapped_column(Integer)
    rounding: Mapped[str] = mapped_column(String(16))
    decimals: Mapped[int] = mapped_column(Integer)
    # Fee rules: {"per_session": {"rate": n, "payer": "cpo"|"emsp"}, "per_kwh": …, "percent": …, "per_period": …}.
    fees: Mapped[Any] = mapped_column(JsonText())
    # ADR 0209: the agreement's VAT regime (as_stated | domestic | reverse_charge | outside_scope), rate in percent.
    vat_regime: Mapped[str] = mapped_column(String(16), server_default="as_stated")
    vat_rate: Mapped[Decimal | None] = mapped_column(Amount)
    vat_note: Mapped[str | None] = mapped_column(Text)
    # ADR 0209: convert into this currency at the period's rate from rate_source; None settles per currency.
    settlement_currency: Mapped[str | None] = mapped_column(String(3))
    rate_source: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))


class PeriodRow(Base):
    """A settlement period [start, end): ``open`` → ``closing`` → ``closed``; a closed period never changes."""

    __tablename__ = "clearing_periods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(32), unique=True)
    start: Mapped[datetime] = mapped_column(UtcDateTime())
    end: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(16))
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64))
    # Netting of the period (gross, bilateral, multilateral, payment advice), written when it closes.
    netting: Mapped[Any] = mapped_column(JsonText(), nullable=True)


class RateRow(Base):
    """A period's reference rate: 1 ``base_currency`` = ``rate`` ``quote_currency`` on ``rate_date`` from ``source``.

    Fixed per period (clearing notes §1.5): set while the period is not closed, copied onto the statements that use
    it at the close, and refused once the period is closed.
    """

    __tablename__ = "clearing_rates"
    __table_args__ = (
        UniqueConstraint(
            "period_id", "base_currency", "quote_currency", "source", name="uq_clearing_rates_period_pair_source"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period_id: Mapped[int] = mapped_column(ForeignKey("clearing_periods.id", ondelete="CASCADE"), index=True)
    base_currency: Mapped[str] = mapped_column(String(3))
    quote_currency: Mapped[str] = mapped_column(String(3))
    rate: Mapped[Decimal] = mapped_column(Rate)
    rate_date: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))


class StatementRow(Base):
    """One statement per (period, CPO, eMSP, currency): totals, the terms used, engine version and input hash."""

    __tablename__ = "clearing_statements"
    __table_args__ = (
        UniqueConstraint(
            "period_id",
            "cpo_country_code",
            "cpo_party_id",
            "emsp_country_code",
            "emsp_party_id",
            "currency",
            name="uq_clearing_statements_period_pair_currency",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period_id: Mapped[int] = mapped_column(ForeignKey("clearing_periods.id", ondelete="CASCADE"), index=True)
    cpo_country_code: Mapped[str] = mapped_column(String(2))
    cpo_party_id: Mapped[str] = mapped_column(String(3))
    emsp_country_code: Mapped[str] = mapped_column(String(2))
    emsp_party_id: Mapped[str] = mapped_column(String(3))
    currency: Mapped[str] = mapped_column(String(3))
    terms_id: Mapped[int | None] = mapped_column(ForeignKey("clearing_terms.id", ondelete="SET NULL"))
    cdr_count: Mapped[int] = mapped_column(Integer)
    excluded_count: Mapped[int] = mapped_column(Integer)
    total_energy: Mapped[Decimal] = mapped_column(Amount)
    amount_excl_vat: Mapped[Decimal] = mapped_column(Amount)
    amount_incl_vat: Mapped[Decimal] = mapped_column(Amount)
    adjustments: Mapped[Decimal] = mapped_column(Amount)
    fees_cpo: Mapped[Decimal] = mapped_column(Amount)
    fees_emsp: Mapped[Decimal] = mapped_column(Amount)
    # What the eMSP owes the CPO: CDR lines incl. VAT plus adjustments (and their VAT under a configured regime).
    payable: Mapped[Decimal] = mapped_column(Amount)
    engine_version: Mapped[str] = mapped_column(String(32))
    input_hash: Mapped[str] = mapped_column(String(64))
    terms: Mapped[Any] = mapped_column(JsonText())
    # ADR 0209: the VAT regime applied, its rate (percent), the VAT of the statement and the note printed.
    vat_regime: Mapped[str] = mapped_column(String(16), server_default="as_stated")
    vat_rate: Mapped[Decimal | None] = mapped_column(Amount)
    vat_amount: Mapped[Decimal] = mapped_column(Amount, server_default="0")
    vat_note: Mapped[str | None] = mapped_column(Text)
    # ADR 0209: the reference rates the close used, {"USD/EUR": {"rate", "rate_date", "source"}}; None: none used.
    rates: Mapped[Any] = mapped_column(JsonText(), nullable=True)


class StatementLineRow(Base):
    """A statement line: a CDR (included or listed as excluded), a fee or an adjustment; rounded here and only here."""

    __tablename__ = "clearing_statement_lines"
    __table_args__ = (Index("ix_clearing_statement_lines_record", "record_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("clearing_statements.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[int | None] = mapped_column(ForeignKey("clearing_cdrs.id", ondelete="SET NULL"))
    included: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(Text)
    payer: Mapped[str | None] = mapped_column(String(8))
    quantity: Mapped[Decimal | None] = mapped_column(Amount)
    amount_excl_vat: Mapped[Decimal] = mapped_column(Amount)
    amount_incl_vat: Mapped[Decimal] = mapped_column(Amount)
    # The CDR's details as settled: ids, dates, energy, stated and recomputed amounts, verification outcome.
    details: Mapped[Any] = mapped_column(JsonText(), nullable=True)


class DisputeRow(Base):
    """A dispute on one CDR: ``open`` → ``credited`` | ``adjusted`` | ``rejected``; each move also a CDR event."""

    __tablename__ = "clearing_disputes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("clearing_cdrs.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    opened_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(Text)
    credit_record_id: Mapped[int | None] = mapped_column(ForeignKey("clearing_cdrs.id", ondelete="SET NULL"))


class AdjustmentRow(Base):
    """A signed amount the eMSP owes the CPO (negative: the CPO owes it back), settled on the next statement."""

    __tablename__ = "clearing_adjustments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dispute_id: Mapped[int | None] = mapped_column(ForeignKey("clearing_disputes.id", ondelete="SET NULL"))
    record_id: Mapped[int | None] = mapped_column(ForeignKey("clearing_cdrs.id", ondelete="SET NULL"))
    cpo_country_code: Mapped[str] = mapped_column(String(2))
    cpo_party_id: Mapped[str] = mapped_column(String(3))
    emsp_country_code: Mapped[str] = mapped_column(String(2))
    emsp_party_id: Mapped[str] = mapped_column(String(3))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Amount)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    # The period whose statement carries it; None until that period closes.
    period_id: Mapped[int | None] = mapped_column(ForeignKey("clearing_periods.id", ondelete="SET NULL"), index=True)
