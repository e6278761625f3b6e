"""What the pricing engine returns: the CDR totals as the hub computes them, and how it got there.

Every amount is a `decimal.Decimal`. The totals are rounded once, at the end, to the OCPI precision (ADR 0102); the
explanation lines keep full precision so that anyone can recompute a total from its lines. The structures are
msgspec Structs so that they serialise directly to JSON (with ``decimal_format="number"``) for storage and display.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final

import msgspec

__all__ = [
    "ZERO",
    "LimitAdjustment",
    "Price",
    "PriceLine",
    "PriceResult",
    "PriceWarning",
    "StepAdjustment",
]

ZERO: Final = Decimal(0)


class _Out(msgspec.Struct, kw_only=True, frozen=True):
    """Base of the result structures: immutable, keyword-only."""


class Price(_Out, kw_only=True, frozen=True):
    """An amount excluding and including VAT (types "Price"); ``incl_vat`` equals ``excl_vat`` when no VAT applies."""

    excl_vat: Decimal = ZERO
    incl_vat: Decimal = ZERO

    def __add__(self, other: Price) -> Price:
        return Price(excl_vat=self.excl_vat + other.excl_vat, incl_vat=self.incl_vat + other.incl_vat)


class PriceLine(_Out, kw_only=True, frozen=True):
    """The price of one dimension in one charging period, and why that price component was chosen."""

    period_index: int
    period_start: datetime
    # ENERGY, TIME, PARKING_TIME, RESERVATION_TIME (priced by a reservation element's TIME component) or FLAT.
    dimension: str
    # The consumed volume before step rounding: kWh, hours, or 1 for FLAT.
    volume: Decimal
    # Which CDR total the line adds to: energy, time, parking, reservation or fixed.
    category: str
    tariff_id: str | None
    element_index: int
    component_index: int
    price: Decimal
    vat: Decimal | None
    step_size: Decimal
    # The restrictions that matched, in words ("no restrictions" for a fallback element).
    reasons: list[str]
    # Earlier elements with a component for this dimension, and the restriction that ruled each one out.
    skipped: list[str]
    excl_vat: Decimal
    incl_vat: Decimal


class StepAdjustment(_Out, kw_only=True, frozen=True):
    """Volume added by step_size rounding of a session total, billed in the period that absorbs it."""

    dimension: str
    category: str
    period_index: int
    period_start: datetime
    tariff_id: str | None
    element_index: int
    component_index: int
    # In the component's step unit: Wh for ENERGY, seconds for the time dimensions.
    step_size: Decimal
    # Session totals of the billable volume (kWh or hours) before and after rounding, and the difference.
    consumed: Decimal
    billed: Decimal
    added: Decimal
    price: Decimal
    vat: Decimal | None
    excl_vat: Decimal
    incl_vat: Decimal
    reason: str


class LimitAdjustment(_Out, kw_only=True, frozen=True):
    """A min_price or max_price clamp of the session total; excl. and incl. VAT are clamped separately."""

    limit: str  # "min_price" or "max_price"
    basis: str  # "excl_vat" or "incl_vat"
    before: Decimal
    limit_value: Decimal
    after: Decimal
    adjustment: Decimal
    reason: str


class PriceWarning(_Out, kw_only=True, frozen=True):
    """Something the engine could not evaluate as the spec intends, or a doubtful input; pricing went on."""

    code: str
    message: str
    period_index: int | None = None


class PriceResult(_Out, kw_only=True, frozen=True):
    """The CDR ``total_*`` fields as the hub computes them, with the full explanation."""

    currency: str | None
    time_zone: str
    total_cost: Price
    total_fixed_cost: Price
    total_energy: Decimal
    total_energy_cost: Price
    total_time: Decimal
    total_time_cost: Price
    total_parking_time: Decimal
    total_parking_cost: Price
    total_reservation_cost: Price
    lines: list[PriceLine]
    step_adjustments: list[StepAdjustment]
    limit_adjustments: list[LimitAdjustment]
    warnings: list[PriceWarning]

    def warning_codes(self) -> list[str]:
        """The warning codes in order, handy for assertions and counting."""
        return [warning.code for warning in self.warnings]
