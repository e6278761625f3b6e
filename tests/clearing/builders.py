"""Small builders for hand-written tariffs and charging periods, so tests read like the spec's examples.

Tariffs go through `tariff_from_builtins`, the same lenient decoding path a JSON tariff takes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from clearing.pricing import ChargingPeriod, PriceResult, Tariff, price_session, tariff_from_builtins

D = Decimal


def vectors_dir() -> Path:
    """``<repo>/../shared/test-vectors``, or ``$HUB_TEST_VECTORS``; read in place, never copied."""
    override = os.environ.get("HUB_TEST_VECTORS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "test-vectors"


def at(text: str) -> datetime:
    """A UTC instant from ``YYYY-MM-DDTHH:MM[:SS]``."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def minutes(count: int | str | Decimal) -> Decimal:
    """Minutes as the hours a CDR TIME/PARKING_TIME/RESERVATION_TIME volume is expressed in."""
    return Decimal(count) / 60


def comp(kind: str, price: str, *, vat: str | None = None, step: int | None = 1) -> dict[str, Any]:
    component: dict[str, Any] = {"type": kind, "price": D(price), "step_size": step}
    if vat is not None:
        component["vat"] = D(vat)
    return component


def el(*components: dict[str, Any], **restrictions: Any) -> dict[str, Any]:
    element: dict[str, Any] = {"price_components": list(components)}
    if restrictions:
        element["restrictions"] = restrictions
    return element


def tariff(*elements: dict[str, Any], id: str = "T1", **fields: Any) -> Tariff:
    return tariff_from_builtins({"id": id, "currency": "EUR", "elements": list(elements), **fields})


def price(excl: str, incl: str | None = None) -> dict[str, Decimal]:
    value = {"excl_vat": D(excl)}
    if incl is not None:
        value["incl_vat"] = D(incl)
    return value


def period(
    start: str,
    *,
    tariff_id: str | None = None,
    dims: Mapping[str, Decimal | str | int] | None = None,
    **volumes: Decimal | str | int,
) -> ChargingPeriod:
    """A charging period; keyword names are CDR dimension types (ENERGY=20, TIME=minutes(30), MAX_CURRENT=16)."""
    volumes = {**(dims or {}), **volumes}
    return msgspec.convert(
        {
            "start_date_time": at(start),
            "tariff_id": tariff_id,
            "dimensions": [{"type": kind, "volume": D(volume)} for kind, volume in volumes.items()],
        },
        ChargingPeriod,
    )


def priced(
    tariffs: Tariff | Sequence[Tariff],
    periods: Sequence[ChargingPeriod],
    end: str,
    *,
    time_zone: str | None = "UTC",
    start: str | None = None,
    **options: Any,
) -> PriceResult:
    """Price periods from the first period's start (or ``start``) to ``end``."""
    return price_session(
        tariffs,
        periods,
        start=at(start) if start else periods[0].start_date_time,
        end=at(end),
        time_zone=time_zone,
        **options,
    )


def totals(result: PriceResult) -> tuple[Decimal, Decimal]:
    return result.total_cost.excl_vat, result.total_cost.incl_vat


def q4(value: Decimal) -> Decimal:
    """Round to the 4 decimals of OCPI numbers, for comparing amounts derived from minutes (non-terminating)."""
    return value.quantize(Decimal("0.0001"))


def as_minutes(hours: Decimal) -> Decimal:
    """Hours back to minutes, rounded to a microminute, for asserting step additions."""
    return (hours * 60).quantize(Decimal("0.000001")).normalize()
