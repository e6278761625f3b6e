"""ORM models of the clearing intake: one clearing record per CDR, its findings, price check and state history.

A clearing record is keyed like the stored CDR it mirrors: (``country_code``, ``party_id``, ``cdr_id``), held as
`hub.ocpi.types.ci_key` (CiStrings compare case-insensitively, types §16.1). The record keeps the CDR's bytes as
received, a canonical content hash for idempotent intake (ADR 0201), the links matching found (ADR 0202) and one
state per dimension (ADR 0204). Findings and the price check are replaced when a record is re-checked; the event
history is append-only (a database trigger refuses UPDATE, and DELETE on PostgreSQL). Class names end in ``Row``
like the stored objects', so they never collide with the result structures of `clearing.intake`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import msgspec
from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from hub.platform.db import Base, UtcDateTime

__all__ = [
    "ClearingCdrRow",
    "ClearingEventRow",
    "ClearingFindingRow",
    "ClearingPriceCheckRow",
    "ClearingRejectionRow",
    "JsonText",
]

_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")
_DECODER: Final = msgspec.json.Decoder(float_hook=Decimal)


class JsonText(TypeDecorator[Any]):
    """JSON kept as text on both databases; numbers round-trip as `Decimal` (never float, DESIGN §8)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _ENCODER.encode(value).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return _DECODER.decode(value)


# OCPI amounts carry 4 decimals (types "number"); 16 integer digits is far beyond any CDR.
Amount = Numeric(20, 4)


class ClearingCdrRow(Base):
    """One CDR as the clearing house knows it: raw bytes, summary columns, links and the five state dimensions."""

    __tablename__ = "clearing_cdrs"
    __table_args__ = (
        UniqueConstraint("country_code", "party_id", "cdr_id"),
        UniqueConstraint("store_row_id"),
        Index("ix_clearing_cdrs_session", "country_code", "party_id", "session_id"),
        Index("ix_clearing_cdrs_credit_reference", "country_code", "party_id", "credit_reference_id"),
        # Possible double submissions under a new id: same token, start within a minute (ADR 0203, CDR041).
        Index("ix_clearing_cdrs_token_start", "token_uid", "start_date_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    cdr_id: Mapped[str] = mapped_column(String(39))
    # The eMSP that owes for the CDR (owner of its cdr_token, mod_cdrs §10.4.5); absent only in imported junk.
    emsp_country_code: Mapped[str | None] = mapped_column(String(2))
    emsp_party_id: Mapped[str | None] = mapped_column(String(3))
    session_id: Mapped[str | None] = mapped_column(String(36))
    credit: Mapped[bool] = mapped_column(Boolean)
    credit_reference_id: Mapped[str | None] = mapped_column(String(39))
    # For a credit CDR: the record of the CDR it credits, once known (mod_cdrs §10.1.1).
    credits_record_id: Mapped[int | None] = mapped_column(
        ForeignKey("clearing_cdrs.id", ondelete="SET NULL"), index=True
    )
    token_uid: Mapped[str | None] = mapped_column(String(36))
    token_type: Mapped[str | None] = mapped_column(String(16))
    location_id: Mapped[str | None] = mapped_column(String(36))
    evse_uid: Mapped[str | None] = mapped_column(String(36))
    start_date_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    end_date_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    currency: Mapped[str | None] = mapped_column(String(3))
    total_cost_excl_vat: Mapped[Decimal | None] = mapped_column(Amount)
    total_cost_incl_vat: Mapped[Decimal | None] = mapped_column(Amount)
    total_energy: Mapped[Decimal | None] = mapped_column(Amount)
    # The CDR exactly as received (signed_data must survive byte for byte) and its canonical content hash.
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    content_hash: Mapped[str] = mapped_column(String(64))
    # Where it came from: "store" (the hub's cdrs table) or "file" (an import), with the file name or row id.
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(255))
    # The cdrs row this record mirrors: sync_from_store picks up the rows no record or rejection names yet.
    store_row_id: Mapped[int | None] = mapped_column(ForeignKey("cdrs.id", ondelete="SET NULL"))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Matching outcome per object (ADR 0202): "matched", "missing" or "not_referenced"; tariff source
    # "store", "cdr", "location", "given", "mixed" or "none". The details (versions, row ids) are in ``links``.
    session_match: Mapped[str] = mapped_column(String(16))
    token_match: Mapped[str] = mapped_column(String(16))
    location_match: Mapped[str] = mapped_column(String(16))
    tariff_source: Mapped[str] = mapped_column(String(16))
    links: Mapped[Any] = mapped_column(JsonText())
    # The state dimensions (ADR 0204), never collapsed into one field.
    delivery_state: Mapped[str] = mapped_column(String(16))
    validation_state: Mapped[str] = mapped_column(String(16), index=True)
    pricing_state: Mapped[str] = mapped_column(String(16), index=True)
    commercial_state: Mapped[str] = mapped_column(String(16))
    settlement_state: Mapped[str] = mapped_column(String(16))
    error_count: Mapped[int] = mapped_column(Integer)
    warning_count: Mapped[int] = mapped_column(Integer)


class ClearingFindingRow(Base):
    """One result of a validation rule for one CDR (ADR 0203); replaced as a whole when the CDR is re-checked."""

    __tablename__ = "clearing_findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("clearing_cdrs.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(8), index=True)
    severity: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    # RFC 6901 JSON pointer into the CDR ("" is the whole document).
    pointer: Mapped[str] = mapped_column(Text)


class ClearingPriceCheckRow(Base):
    """The latest independent price recomputation of a CDR and how it compares with the CDR's totals (ADR 0205)."""

    __tablename__ = "clearing_price_checks"

    record_id: Mapped[int] = mapped_column(ForeignKey("clearing_cdrs.id", ondelete="CASCADE"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16))
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime())
    tolerance: Mapped[Decimal] = mapped_column(Amount)
    time_zone: Mapped[str | None] = mapped_column(String(64))
    tariff_source: Mapped[str] = mapped_column(String(16))
    # The hub's totals, the per-field differences, the engine's explanation (lines, step and limit adjustments;
    # kept unless the outcome is "matched") and warnings; ``error`` says why a CDR is unpriceable.
    computed: Mapped[Any] = mapped_column(JsonText(), nullable=True)
    differences: Mapped[Any] = mapped_column(JsonText())
    explanation: Mapped[Any] = mapped_column(JsonText(), nullable=True)
    warnings: Mapped[Any] = mapped_column(JsonText())
    error: Mapped[str | None] = mapped_column(Text)


class ClearingEventRow(Base):
    """An append-only entry of a CDR's state history: who moved which dimension from what to what, when and why."""

    __tablename__ = "clearing_cdr_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("clearing_cdrs.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    dimension: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[Any] = mapped_column(JsonText(), nullable=True)


class ClearingRejectionRow(Base):
    """An intake attempt the clearing house refused, with the payload as received (ADR 0201).

    ``reason`` is "conflict" (same key, different content: CDRs are immutable, mod_cdrs §10.1) or "invalid" (not
    JSON, or no usable country_code/party_id/id). The key columns are set when the payload has a valid key. A
    repeated identical attempt only counts up ``attempts``.
    """

    __tablename__ = "clearing_intake_rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(255))
    store_row_id: Mapped[int | None] = mapped_column(ForeignKey("cdrs.id", ondelete="SET NULL"), index=True)
    country_code: Mapped[str | None] = mapped_column(String(2))
    party_id: Mapped[str | None] = mapped_column(String(3))
    cdr_id: Mapped[str | None] = mapped_column(String(39))
    reason: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    existing_record_id: Mapped[int | None] = mapped_column(ForeignKey("clearing_cdrs.id", ondelete="SET NULL"))
