"""Price verification: recompute a CDR's price independently and compare every total with the CDR's own (ADR 0205).

Pure: it calls the pricing engine (`clearing.pricing.price_cdr`) with the tariffs matching chose and the location's
time zone, then sorts the comparison into one outcome:

* ``matched``: every total equals the hub's at OCPI precision (4 decimals);
* ``within_tolerance``: some differ, none by more than the tolerance (default 0.01 per amount);
* ``mismatch``: at least one differs by more; the per-field differences and the engine's explanation are kept;
* ``unpriceable``: no tariff, no usable time zone where the tariff needs local time, a CDR pricing cannot read, or
  an engine error; ``error`` says which.

A credit CDR states negative amounts (mod_cdrs §10.1.1); it is compared by size, so the credit of a correctly priced
CDR matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import msgspec

from clearing.document import ParsedCdr
from clearing.facts import TariffResolution
from clearing.pricing import (
    PRICE_FIELDS,
    Cdr,
    InputError,
    PriceResult,
    PriceWarning,
    PricingError,
    StatedPrice,
    Tariff,
    compare_totals,
    price_cdr,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "OUTCOMES",
    "Difference",
    "PriceVerification",
    "needs_local_time",
    "verify_price",
]

#: The tolerance per amount until agreements set their own (clearing notes §4 item 11).
DEFAULT_TOLERANCE: Final = Decimal("0.01")
OUTCOMES: Final = ("matched", "within_tolerance", "mismatch", "unpriceable")
_TOTALS: Final = (
    "total_cost",
    "total_fixed_cost",
    "total_energy",
    "total_energy_cost",
    "total_time",
    "total_time_cost",
    "total_parking_time",
    "total_parking_cost",
    "total_reservation_cost",
)
_LOCAL_RESTRICTIONS: Final = ("start_time", "end_time", "start_date", "end_date", "day_of_week")


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    """One total where the CDR and the hub differ: ``difference`` is stated minus computed."""

    field: str
    stated: Decimal
    computed: Decimal
    difference: Decimal


class PriceVerification(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of recomputing one CDR's price, with everything needed to explain it."""

    outcome: str
    tolerance: Decimal
    time_zone: str | None
    tariff_source: str
    tariff_ids: list[str]
    differences: list[Difference]
    # The hub's totals as the CDR's total_* fields (Price objects and volumes).
    computed: dict[str, Any] | None
    # The engine's lines, step and limit adjustments: kept unless the outcome is "matched" (it can be recomputed).
    explanation: dict[str, Any] | None
    warnings: list[PriceWarning]
    error: str | None = None


def needs_local_time(tariffs: Sequence[Tariff]) -> bool:
    """Whether any element restricts on local time or date (mod_tariffs: restrictions are in local time)."""
    for tariff in tariffs:
        for element in tariff.elements:
            restrictions = element.restrictions
            if restrictions is not None and any(getattr(restrictions, name) for name in _LOCAL_RESTRICTIONS):
                return True
    return False


def _unpriceable(resolution: TariffResolution, tolerance: Decimal, zone: str | None, error: str) -> PriceVerification:
    return PriceVerification(
        outcome="unpriceable",
        tolerance=tolerance,
        time_zone=zone,
        tariff_source=resolution.source,
        tariff_ids=[use.tariff_id for use in resolution.uses if use.tariff_id and use.tariff is not None],
        differences=[],
        computed=None,
        explanation=None,
        warnings=[],
        error=error,
    )


def _by_size(view: Cdr) -> Cdr:
    """The credit CDR with its negative amounts turned positive, to compare with a recomputed (positive) price."""
    changes: dict[str, StatedPrice] = {}
    for name in PRICE_FIELDS:
        stated: StatedPrice | None = getattr(view, name)
        if stated is not None and stated.excl_vat < 0:
            incl = -stated.incl_vat if stated.incl_vat is not None else None
            changes[name] = StatedPrice(excl_vat=-stated.excl_vat, incl_vat=incl)
    return msgspec.structs.replace(view, **changes) if changes else view


def _builtins(value: Any) -> Any:
    # Decimals and datetimes stay as they are, so JSON output keeps amounts as numbers.
    return msgspec.to_builtins(value, builtin_types=(Decimal, datetime))


def _computed(result: PriceResult) -> dict[str, Any]:
    return {name: _builtins(getattr(result, name)) for name in _TOTALS}


def _explanation(result: PriceResult) -> dict[str, Any]:
    return {
        "lines": _builtins(result.lines),
        "step_adjustments": _builtins(result.step_adjustments),
        "limit_adjustments": _builtins(result.limit_adjustments),
    }


def verify_price(
    cdr: ParsedCdr,
    resolution: TariffResolution,
    *,
    time_zone: str | None = None,
    tolerance: Decimal = DEFAULT_TOLERANCE,
) -> PriceVerification:
    """Recompute ``cdr``'s price with the resolved tariffs and compare it with the CDR's totals.

    ``time_zone`` is the location's (IANA name). Without one the CDR location's own ``time_zone`` (a non-standard
    field some senders add) is used; without that, UTC when no tariff restricts on local time, else unpriceable.
    """
    view = cdr.view
    if view is None:
        return _unpriceable(resolution, tolerance, time_zone, f"the CDR cannot be priced: {cdr.view_error}")
    tariffs = resolution.tariffs
    if not tariffs:
        return _unpriceable(resolution, tolerance, time_zone, "no tariff to price the CDR with")
    zone = time_zone or (view.cdr_location.time_zone if view.cdr_location is not None else None)
    if zone is None:
        if needs_local_time(tariffs):
            return _unpriceable(
                resolution,
                tolerance,
                None,
                "the location's time zone is unknown and the tariff has time-of-day or date restrictions, which "
                "apply in local time",
            )
        zone = "UTC"
    try:
        result = price_cdr(view, tariffs, zone)
    except (PricingError, InputError) as exc:
        return _unpriceable(resolution, tolerance, zone, str(exc))
    except Exception as exc:  # an engine bug must not stop intake; the CDR is left for a re-check
        return _unpriceable(resolution, tolerance, zone, f"pricing engine error: {type(exc).__name__}: {exc}")
    stated = _by_size(view) if cdr.credit else view
    exact = compare_totals(result, stated)
    beyond = compare_totals(result, stated, tolerance=tolerance) if exact else []
    outcome = "matched" if not exact else "within_tolerance" if not beyond else "mismatch"
    return PriceVerification(
        outcome=outcome,
        tolerance=tolerance,
        time_zone=zone,
        tariff_source=resolution.source,
        tariff_ids=[use.tariff_id for use in resolution.uses if use.tariff_id and use.tariff is not None],
        differences=[
            Difference(field=d.field, stated=d.stated, computed=d.computed, difference=d.stated - d.computed)
            for d in exact
        ],
        computed=_computed(result),
        explanation=None if outcome == "matched" else _explanation(result),
        warnings=list(result.warnings),
    )
