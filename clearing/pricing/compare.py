"""Comparison of the hub's computed totals with the totals a CDR states (clearing notes §1.6, PRC-RECOMPUTE).

The CPO's CDR carries its own ``total_*`` fields. A clearing house recomputes them and reports each difference;
deciding whether a difference is acceptable (tolerance, agreement) is the caller's business.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import msgspec

from clearing.pricing.inputs import Cdr, StatedPrice
from clearing.pricing.result import ZERO, Price, PriceResult

__all__ = ["PRICE_FIELDS", "VOLUME_FIELDS", "TotalDifference", "compare_totals"]

#: The CDR's Price totals (mod_cdrs §10.3.1), total_cost first; the one list clearing uses for them.
PRICE_FIELDS: Final = (
    "total_cost",
    "total_fixed_cost",
    "total_energy_cost",
    "total_time_cost",
    "total_parking_cost",
    "total_reservation_cost",
)
#: The CDR's volume totals (kWh, hours, hours).
VOLUME_FIELDS: Final = ("total_energy", "total_time", "total_parking_time")


class TotalDifference(msgspec.Struct, kw_only=True, frozen=True):
    """One total where the CDR and the hub disagree by more than the tolerance."""

    field: str  # for example "total_cost.incl_vat"
    stated: Decimal
    computed: Decimal


def compare_totals(result: PriceResult, cdr: Cdr, *, tolerance: Decimal = ZERO) -> list[TotalDifference]:
    """List the totals that differ. A total the CDR omits counts as zero (an optional `Price` absent means no cost);
    an omitted ``incl_vat`` inside a stated Price is not compared."""
    differences: list[TotalDifference] = []

    def check(name: str, stated: Decimal, computed: Decimal) -> None:
        if abs(stated - computed) > tolerance:
            differences.append(TotalDifference(field=name, stated=stated, computed=computed))

    for name in PRICE_FIELDS:
        stated_price: StatedPrice | None = getattr(cdr, name)
        computed_price: Price = getattr(result, name)
        check(f"{name}.excl_vat", stated_price.excl_vat if stated_price else ZERO, computed_price.excl_vat)
        if stated_price is None or stated_price.incl_vat is not None:
            stated_incl = stated_price.incl_vat if stated_price and stated_price.incl_vat is not None else ZERO
            check(f"{name}.incl_vat", stated_incl, computed_price.incl_vat)
    for name in VOLUME_FIELDS:
        stated_volume: Decimal | None = getattr(cdr, name)
        check(name, stated_volume if stated_volume is not None else ZERO, getattr(result, name))
    return differences
