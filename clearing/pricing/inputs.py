"""Lenient read-only views of the OCPI 2.2.1 Tariff and CDR fields that pricing needs.

The pricing engine does not depend on the hub's wire model (``hub.ocpi``): it decodes its own small views, so that
a CDR with a defect in a field that does not affect the price (a missing token, a malformed coordinate, an unknown
enum value) can still be priced and compared. The rules for the views:

* every number is a `decimal.Decimal` (types "number": JSON numbers, 4 decimals by convention), never a float;
* every DateTime is an aware UTC `datetime`; a timestamp without a zone designator is UTC (types "DateTime");
* unknown fields are ignored and ``null`` means absent;
* enumerations are kept as upper-case strings, so an unknown value becomes a pricing warning, not a decode error;
* unknown keys inside ``restrictions`` are kept (as ``unknown_keys``) so the engine can warn that it could not
  evaluate them (mod_tariffs "TariffRestrictions").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

import msgspec

__all__ = [
    "KNOWN_RESTRICTIONS",
    "Cdr",
    "CdrDimension",
    "CdrLocation",
    "ChargingPeriod",
    "InputError",
    "PriceComponent",
    "StatedPrice",
    "Tariff",
    "TariffElement",
    "TariffRestrictions",
    "cdr_from_builtins",
    "decode_cdr",
    "decode_tariff",
    "decode_tariffs",
    "tariff_from_builtins",
    "tariffs_from_builtins",
]

T = TypeVar("T")

# The TariffRestrictions fields of OCPI 2.2.1 (mod_tariffs "TariffRestrictions class"). Anything else found in a
# `restrictions` object is reported by the engine instead of being silently dropped.
KNOWN_RESTRICTIONS: Final = frozenset(
    {
        "start_time",
        "end_time",
        "start_date",
        "end_date",
        "min_kwh",
        "max_kwh",
        "min_current",
        "max_current",
        "min_power",
        "max_power",
        "min_duration",
        "max_duration",
        "day_of_week",
        "reservation",
    }
)

# Where the decoder stores unknown restriction keys. The `$` keeps it from colliding with any OCPI field name.
_UNKNOWN_KEY: Final = "$unknown_keys"


class InputError(ValueError):
    """The input is not JSON, or it lacks a field that pricing needs; the message names the field path."""


def _utc(value: datetime) -> datetime:
    # types "DateTime": all timestamps are UTC and a missing designator means UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _finite(value: Decimal | None, name: str) -> None:
    if value is not None and not value.is_finite():
        raise ValueError(f"`{name}` must be a finite number, got {value}")


class _View(msgspec.Struct, kw_only=True):
    """Base of the views: keyword-only construction, unknown fields ignored."""


class StatedPrice(_View, kw_only=True):
    """A `Price` as found in a Tariff (min/max price) or stated in a CDR (types "Price")."""

    excl_vat: Decimal
    incl_vat: Decimal | None = None

    def __post_init__(self) -> None:
        _finite(self.excl_vat, "excl_vat")
        _finite(self.incl_vat, "incl_vat")


class PriceComponent(_View, kw_only=True):
    """One priced dimension of a tariff element (mod_tariffs "PriceComponent class")."""

    type: str
    price: Decimal
    vat: Decimal | None = None
    # Mandatory in OCPI; a missing value is read as 1, the default the CDR dimension table mentions.
    step_size: Decimal | None = None

    def __post_init__(self) -> None:
        self.type = self.type.upper()
        _finite(self.price, "price")
        _finite(self.vat, "vat")
        _finite(self.step_size, "step_size")


class TariffRestrictions(_View, kw_only=True):
    """When a tariff element is active (mod_tariffs "TariffRestrictions class"); all set fields are ANDed."""

    start_time: str | None = None
    end_time: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: Decimal | None = None
    max_duration: Decimal | None = None
    day_of_week: list[str] | None = None
    reservation: str | None = None
    unknown_keys: list[str] = msgspec.field(default_factory=list, name=_UNKNOWN_KEY)

    def __post_init__(self) -> None:
        for name in ("min_kwh", "max_kwh", "min_current", "max_current", "min_power", "max_power"):
            _finite(getattr(self, name), name)
        _finite(self.min_duration, "min_duration")
        _finite(self.max_duration, "max_duration")
        if self.day_of_week is not None:
            self.day_of_week = [day.upper() for day in self.day_of_week]
        if self.reservation is not None:
            self.reservation = self.reservation.upper()


class TariffElement(_View, kw_only=True):
    """A group of price components sharing one set of restrictions (mod_tariffs "TariffElement class")."""

    price_components: list[PriceComponent]
    restrictions: TariffRestrictions | None = None


class Tariff(_View, kw_only=True):
    """The parts of a Tariff object that pricing reads (mod_tariffs "Tariff Object")."""

    id: str | None = None
    country_code: str | None = None
    party_id: str | None = None
    currency: str | None = None
    type: str | None = None
    min_price: StatedPrice | None = None
    max_price: StatedPrice | None = None
    elements: list[TariffElement]
    start_date_time: datetime | None = None
    end_date_time: datetime | None = None

    def __post_init__(self) -> None:
        if self.start_date_time is not None:
            self.start_date_time = _utc(self.start_date_time)
        if self.end_date_time is not None:
            self.end_date_time = _utc(self.end_date_time)


class CdrDimension(_View, kw_only=True):
    """One measured value of a charging period (mod_cdrs "CdrDimension class")."""

    type: str
    volume: Decimal

    def __post_init__(self) -> None:
        self.type = self.type.upper()
        _finite(self.volume, "volume")


class ChargingPeriod(_View, kw_only=True):
    """A period of constant pricing conditions (mod_cdrs "ChargingPeriod class")."""

    start_date_time: datetime
    dimensions: list[CdrDimension] = []
    tariff_id: str | None = None

    def __post_init__(self) -> None:
        self.start_date_time = _utc(self.start_date_time)


class CdrLocation(_View, kw_only=True):
    """The CDR's location. ``time_zone`` is not a CdrLocation field in 2.2.1, but some senders add it."""

    country: str | None = None
    time_zone: str | None = None


class Cdr(_View, kw_only=True):
    """The parts of a CDR that pricing reads, including the totals the CPO stated (mod_cdrs "CDR Object")."""

    id: str | None = None
    country_code: str | None = None
    party_id: str | None = None
    start_date_time: datetime
    end_date_time: datetime
    currency: str | None = None
    cdr_location: CdrLocation | None = None
    tariffs: list[Tariff] = []
    charging_periods: list[ChargingPeriod] = []
    total_cost: StatedPrice | None = None
    total_fixed_cost: StatedPrice | None = None
    total_energy: Decimal | None = None
    total_energy_cost: StatedPrice | None = None
    total_time: Decimal | None = None
    total_time_cost: StatedPrice | None = None
    total_parking_time: Decimal | None = None
    total_parking_cost: StatedPrice | None = None
    total_reservation_cost: StatedPrice | None = None

    def __post_init__(self) -> None:
        self.start_date_time = _utc(self.start_date_time)
        self.end_date_time = _utc(self.end_date_time)
        for name in ("total_energy", "total_time", "total_parking_time"):
            _finite(getattr(self, name), name)


# --- decoding -----------------------------------------------------------------------------------------------------

# Floats become Decimals straight from their JSON text, so 0.1 stays exactly 0.1.
_JSON: Final = msgspec.json.Decoder(float_hook=Decimal)


def _strip_nulls(value: Any) -> Any:
    """Drop ``null`` members so that they count as absent (a `null` list then gets its default)."""
    if isinstance(value, Mapping):
        return {key: _strip_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_strip_nulls(item) for item in value]
    return value


def _mark_unknown_restrictions(tariff: Any) -> Any:
    if not isinstance(tariff, dict):
        return tariff
    for element in tariff.get("elements") or []:
        if isinstance(element, dict) and isinstance(element.get("restrictions"), dict):
            restrictions = element["restrictions"]
            unknown = sorted(str(key) for key in restrictions if key not in KNOWN_RESTRICTIONS)
            restrictions.pop(_UNKNOWN_KEY, None)
            if unknown:
                restrictions[_UNKNOWN_KEY] = unknown
    return tariff


def _prepare_tariff(obj: Any) -> Any:
    return _mark_unknown_restrictions(_strip_nulls(obj))


def _prepare_cdr(obj: Any, nulls_dropped: bool = False) -> Any:
    has_tariffs = isinstance(obj, dict) and isinstance(obj.get("tariffs"), list)
    if nulls_dropped and not has_tariffs:
        return obj  # nothing to strip or mark: convert reads it as it is, without a copy
    obj = _strip_nulls(obj)  # a copy: the caller's object is never changed
    if has_tariffs:
        obj["tariffs"] = [_mark_unknown_restrictions(tariff) for tariff in obj["tariffs"]]
    return obj


def _convert(obj: Any, type_: type[T], what: str) -> T:
    try:
        return msgspec.convert(obj, type_)
    except msgspec.ValidationError as exc:
        raise InputError(f"not a valid {what}: {exc}") from None


def _json(data: bytes | str, what: str) -> Any:
    try:
        return _JSON.decode(data)
    except msgspec.DecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from None


def tariff_from_builtins(obj: Any) -> Tariff:
    """Build a `Tariff` view from decoded JSON (dicts, lists, numbers as Decimal, int, float or str)."""
    return _convert(_prepare_tariff(obj), Tariff, "Tariff")


def tariffs_from_builtins(obj: Any) -> list[Tariff]:
    """Build `Tariff` views from one Tariff object or a list of them."""
    if isinstance(obj, list):
        return _convert([_prepare_tariff(item) for item in obj], list[Tariff], "list of Tariffs")
    return [tariff_from_builtins(obj)]


def cdr_from_builtins(obj: Any, *, nulls_dropped: bool = False) -> Cdr:
    """Build a `Cdr` view from decoded JSON (dicts, lists, numbers as Decimal, int, float or str).

    ``nulls_dropped``: the caller already removed every ``null`` member (clearing's parse does), which saves a copy.
    """
    return _convert(_prepare_cdr(obj, nulls_dropped), Cdr, "CDR")


def decode_tariff(data: bytes | str) -> Tariff:
    """Decode one Tariff object from JSON; raise `InputError` naming the offending field."""
    return tariff_from_builtins(_json(data, "Tariff"))


def decode_tariffs(data: bytes | str) -> list[Tariff]:
    """Decode a JSON document holding one Tariff object or a list of them."""
    return tariffs_from_builtins(_json(data, "Tariff document"))


def decode_cdr(data: bytes | str) -> Cdr:
    """Decode one CDR from JSON; raise `InputError` naming the offending field."""
    return cdr_from_builtins(_json(data, "CDR"))
