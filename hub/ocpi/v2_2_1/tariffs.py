"""Tariffs module objects (mod_tariffs §11).

Tariffs have no PATCH (mod_tariffs §11.2: PATCH n/a), so there is no ``TariffPatch``.

Enum choices: `TariffDimensionType`, `DayOfWeek` and `ReservationRestrictionType` are strict
`StrEnum`s because clearing prices CDRs with them. `TariffType` is only relayed, so
``Tariff.type`` is an open string and the `TariffType` `StrEnum` names the known values.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from msgspec import Meta

from hub.ocpi.types import (
    URL,
    CiString36,
    CountryCode,
    DateTime,
    DisplayText,
    OcpiStruct,
    OpenEnum,
    PartyId,
    Price,
    String3,
)
from hub.ocpi.v2_2_1.locations import EnergyMix, HourMinute

__all__ = [
    "DayOfWeek",
    "LocalDate",
    "PriceComponent",
    "ReservationRestrictionType",
    "Tariff",
    "TariffDimensionType",
    "TariffElement",
    "TariffRestrictions",
    "TariffType",
]

#: Local calendar date "YYYY-MM-DD" (mod_tariffs §11.4.6).
LocalDate = Annotated[str, Meta(max_length=10, pattern=r"^([12][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]


class DayOfWeek(StrEnum):
    """Day of the week (mod_tariffs §11.4.1)."""

    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"


class ReservationRestrictionType(StrEnum):
    """Marks a tariff element as reservation pricing (mod_tariffs §11.4.3)."""

    RESERVATION = "RESERVATION"
    RESERVATION_EXPIRES = "RESERVATION_EXPIRES"


class TariffDimensionType(StrEnum):
    """What a price component prices (mod_tariffs §11.4.5)."""

    ENERGY = "ENERGY"
    FLAT = "FLAT"
    PARKING_TIME = "PARKING_TIME"
    TIME = "TIME"


class TariffType(StrEnum):
    """When a tariff applies (mod_tariffs §11.4.7)."""

    AD_HOC_PAYMENT = "AD_HOC_PAYMENT"
    PROFILE_CHEAP = "PROFILE_CHEAP"
    PROFILE_FAST = "PROFILE_FAST"
    PROFILE_GREEN = "PROFILE_GREEN"
    REGULAR = "REGULAR"


class PriceComponent(OcpiStruct):
    """Price of one dimension, excl. VAT, billed in ``step_size`` blocks (mod_tariffs §11.4.2)."""

    type: TariffDimensionType
    price: Decimal
    vat: Decimal | None = None
    step_size: int


class TariffRestrictions(OcpiStruct):
    """Conditions under which a tariff element applies (mod_tariffs §11.4.6)."""

    start_time: HourMinute | None = None
    end_time: HourMinute | None = None
    start_date: LocalDate | None = None
    end_date: LocalDate | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    day_of_week: list[DayOfWeek] | None = None
    reservation: ReservationRestrictionType | None = None


class TariffElement(OcpiStruct):
    """Price components plus the restrictions under which they apply (mod_tariffs §11.4.4)."""

    price_components: Annotated[list[PriceComponent], Meta(min_length=1)]
    restrictions: TariffRestrictions | None = None


class Tariff(OcpiStruct):
    """A tariff owned by a CPO; at least one element (mod_tariffs §11.3.1)."""

    country_code: CountryCode
    party_id: PartyId
    id: CiString36
    currency: String3
    type: OpenEnum | None = None  # a TariffType value
    tariff_alt_text: list[DisplayText] | None = None
    tariff_alt_url: URL | None = None
    min_price: Price | None = None
    max_price: Price | None = None
    elements: Annotated[list[TariffElement], Meta(min_length=1)]
    start_date_time: DateTime | None = None
    end_date_time: DateTime | None = None
    energy_mix: EnergyMix | None = None
    last_updated: DateTime
