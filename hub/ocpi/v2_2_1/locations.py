"""Locations module objects (mod_locations §8): Location, EVSE, Connector, their PATCH bodies and helpers.

Length limits follow the 2.2.1 bugfix branch: Location ``address`` string(255), ``state`` string(45)
(hub notes §0 errata).

Enum choices: `Status` is a strict `StrEnum` (the hub tracks EVSE availability and REMOVED).
Everything else (`Capability`, `ConnectorFormat`, `ConnectorType`, `EnergySourceCategory`,
`EnvironmentalImpactCategory`, `Facility`, `ParkingRestriction`, `ParkingType`, `PowerType`,
`ImageCategory`) is only stored and relayed, so those fields are open strings (`OpenEnum`) and
the `StrEnum` classes just name the known values; partner or 2.3.0 additions survive.

PATCH bodies (`LocationPatch`, `EvsePatch`, `ConnectorPatch`) carry only the changed fields
(transport §4.1.4.3): every field defaults to `msgspec.UNSET` and keeps its full-object type, so a
field that is optional in the object may also arrive as ``null`` (``None``); ``last_updated`` is
always required (mod_locations §8.2.2.3: every PATCH SHALL contain it).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from msgspec import UNSET, Meta, UnsetType

from hub.ocpi.types import (
    URL,
    CiString36,
    CiString48,
    CountryCode,
    DateTime,
    DisplayText,
    OcpiStruct,
    OpenEnum,
    PartyId,
    String3,
    String4,
    String10,
    String16,
    String45,
    String64,
    String255,
)
from hub.ocpi.v2_2_1.common import TokenType
from hub.ocpi.v2_2_1.credentials import BusinessDetails, Image

__all__ = [
    "EVSE",
    "AdditionalGeoLocation",
    "Capability",
    "Connector",
    "ConnectorFormat",
    "ConnectorPatch",
    "ConnectorType",
    "EnergyMix",
    "EnergySource",
    "EnergySourceCategory",
    "EnvironmentalImpact",
    "EnvironmentalImpactCategory",
    "EvsePatch",
    "ExceptionalPeriod",
    "Facility",
    "GeoLocation",
    "HourMinute",
    "Hours",
    "Latitude",
    "Location",
    "LocationPatch",
    "Longitude",
    "ParkingRestriction",
    "ParkingType",
    "PowerType",
    "PublishTokenType",
    "RegularHours",
    "Status",
    "StatusSchedule",
]

#: Decimal degrees as text, "." separator, 5-7 decimals (mod_locations §8.4.13). The spec's regex
#: allows one character more than its string(10)/string(11) (a minus sign with 7 decimals, e.g.
#: "-33.8688197"); such values are real coordinates, so the regex alone bounds the length.
Latitude = Annotated[str, Meta(pattern=r"^-?[0-9]{1,2}\.[0-9]{5,7}$")]
Longitude = Annotated[str, Meta(pattern=r"^-?[0-9]{1,3}\.[0-9]{5,7}$")]
#: Local time of day "hh:mm", 24h with leading zeros (mod_locations §8.4.21, mod_tariffs §11.4.6).
HourMinute = Annotated[str, Meta(max_length=5, pattern=r"^([0-1][0-9]|2[0-3]):[0-5][0-9]$")]


# --- enums ----------------------------------------------------------------------------------


class Capability(StrEnum):
    """What an EVSE can do (mod_locations §8.4.3)."""

    CHARGING_PROFILE_CAPABLE = "CHARGING_PROFILE_CAPABLE"
    CHARGING_PREFERENCES_CAPABLE = "CHARGING_PREFERENCES_CAPABLE"
    CHIP_CARD_SUPPORT = "CHIP_CARD_SUPPORT"
    CONTACTLESS_CARD_SUPPORT = "CONTACTLESS_CARD_SUPPORT"
    CREDIT_CARD_PAYABLE = "CREDIT_CARD_PAYABLE"
    DEBIT_CARD_PAYABLE = "DEBIT_CARD_PAYABLE"
    PED_TERMINAL = "PED_TERMINAL"
    REMOTE_START_STOP_CAPABLE = "REMOTE_START_STOP_CAPABLE"
    RESERVABLE = "RESERVABLE"
    RFID_READER = "RFID_READER"
    START_SESSION_CONNECTOR_REQUIRED = "START_SESSION_CONNECTOR_REQUIRED"
    TOKEN_GROUP_CAPABLE = "TOKEN_GROUP_CAPABLE"
    UNLOCK_CAPABLE = "UNLOCK_CAPABLE"


class ConnectorFormat(StrEnum):
    """Socket or attached cable (mod_locations §8.4.4)."""

    SOCKET = "SOCKET"
    CABLE = "CABLE"


class ConnectorType(StrEnum):
    """Connector standard (mod_locations §8.4.5)."""

    CHADEMO = "CHADEMO"
    CHAOJI = "CHAOJI"
    DOMESTIC_A = "DOMESTIC_A"
    DOMESTIC_B = "DOMESTIC_B"
    DOMESTIC_C = "DOMESTIC_C"
    DOMESTIC_D = "DOMESTIC_D"
    DOMESTIC_E = "DOMESTIC_E"
    DOMESTIC_F = "DOMESTIC_F"
    DOMESTIC_G = "DOMESTIC_G"
    DOMESTIC_H = "DOMESTIC_H"
    DOMESTIC_I = "DOMESTIC_I"
    DOMESTIC_J = "DOMESTIC_J"
    DOMESTIC_K = "DOMESTIC_K"
    DOMESTIC_L = "DOMESTIC_L"
    DOMESTIC_M = "DOMESTIC_M"
    DOMESTIC_N = "DOMESTIC_N"
    DOMESTIC_O = "DOMESTIC_O"
    GBT_AC = "GBT_AC"
    GBT_DC = "GBT_DC"
    IEC_60309_2_SINGLE_16 = "IEC_60309_2_single_16"
    IEC_60309_2_THREE_16 = "IEC_60309_2_three_16"
    IEC_60309_2_THREE_32 = "IEC_60309_2_three_32"
    IEC_60309_2_THREE_64 = "IEC_60309_2_three_64"
    IEC_62196_T1 = "IEC_62196_T1"
    IEC_62196_T1_COMBO = "IEC_62196_T1_COMBO"
    IEC_62196_T2 = "IEC_62196_T2"
    IEC_62196_T2_COMBO = "IEC_62196_T2_COMBO"
    IEC_62196_T3A = "IEC_62196_T3A"
    IEC_62196_T3C = "IEC_62196_T3C"
    NEMA_5_20 = "NEMA_5_20"
    NEMA_6_30 = "NEMA_6_30"
    NEMA_6_50 = "NEMA_6_50"
    NEMA_10_30 = "NEMA_10_30"
    NEMA_10_50 = "NEMA_10_50"
    NEMA_14_30 = "NEMA_14_30"
    NEMA_14_50 = "NEMA_14_50"
    PANTOGRAPH_BOTTOM_UP = "PANTOGRAPH_BOTTOM_UP"
    PANTOGRAPH_TOP_DOWN = "PANTOGRAPH_TOP_DOWN"
    TESLA_R = "TESLA_R"
    TESLA_S = "TESLA_S"


class EnergySourceCategory(StrEnum):
    """Kind of energy source (mod_locations §8.4.8)."""

    NUCLEAR = "NUCLEAR"
    GENERAL_FOSSIL = "GENERAL_FOSSIL"
    COAL = "COAL"
    GAS = "GAS"
    GENERAL_GREEN = "GENERAL_GREEN"
    SOLAR = "SOLAR"
    WIND = "WIND"
    WATER = "WATER"


class EnvironmentalImpactCategory(StrEnum):
    """Kind of environmental impact (mod_locations §8.4.10)."""

    NUCLEAR_WASTE = "NUCLEAR_WASTE"
    CARBON_DIOXIDE = "CARBON_DIOXIDE"


class Facility(StrEnum):
    """Facility a location belongs to (mod_locations §8.4.12)."""

    HOTEL = "HOTEL"
    RESTAURANT = "RESTAURANT"
    CAFE = "CAFE"
    MALL = "MALL"
    SUPERMARKET = "SUPERMARKET"
    SPORT = "SPORT"
    RECREATION_AREA = "RECREATION_AREA"
    NATURE = "NATURE"
    MUSEUM = "MUSEUM"
    BIKE_SHARING = "BIKE_SHARING"
    BUS_STOP = "BUS_STOP"
    TAXI_STAND = "TAXI_STAND"
    TRAM_STOP = "TRAM_STOP"
    METRO_STATION = "METRO_STATION"
    TRAIN_STATION = "TRAIN_STATION"
    AIRPORT = "AIRPORT"
    PARKING_LOT = "PARKING_LOT"
    CARPOOL_PARKING = "CARPOOL_PARKING"
    FUEL_STATION = "FUEL_STATION"
    WIFI = "WIFI"


class ParkingRestriction(StrEnum):
    """Restriction on a parking spot (mod_locations §8.4.17)."""

    EV_ONLY = "EV_ONLY"
    PLUGGED = "PLUGGED"
    DISABLED = "DISABLED"
    CUSTOMERS = "CUSTOMERS"
    MOTORCYCLES = "MOTORCYCLES"


class ParkingType(StrEnum):
    """General type of parking (mod_locations §8.4.18)."""

    ALONG_MOTORWAY = "ALONG_MOTORWAY"
    PARKING_GARAGE = "PARKING_GARAGE"
    PARKING_LOT = "PARKING_LOT"
    ON_DRIVEWAY = "ON_DRIVEWAY"
    ON_STREET = "ON_STREET"
    UNDERGROUND_GARAGE = "UNDERGROUND_GARAGE"


class PowerType(StrEnum):
    """AC phases or DC (mod_locations §8.4.19)."""

    AC_1_PHASE = "AC_1_PHASE"
    AC_2_PHASE = "AC_2_PHASE"
    AC_2_PHASE_SPLIT = "AC_2_PHASE_SPLIT"
    AC_3_PHASE = "AC_3_PHASE"
    DC = "DC"


class Status(StrEnum):
    """Status of an EVSE (mod_locations §8.4.22)."""

    AVAILABLE = "AVAILABLE"
    BLOCKED = "BLOCKED"
    CHARGING = "CHARGING"
    INOPERATIVE = "INOPERATIVE"
    OUTOFORDER = "OUTOFORDER"
    PLANNED = "PLANNED"
    REMOVED = "REMOVED"
    RESERVED = "RESERVED"
    UNKNOWN = "UNKNOWN"


# --- classes --------------------------------------------------------------------------------


class GeoLocation(OcpiStruct):
    """Coordinates as decimal-degree strings (mod_locations §8.4.13)."""

    latitude: Latitude
    longitude: Longitude


class AdditionalGeoLocation(OcpiStruct):
    """A related point, e.g. an entrance, with an optional name (mod_locations §8.4.1)."""

    latitude: Latitude
    longitude: Longitude
    name: DisplayText | None = None


class EnergySource(OcpiStruct):
    """Share (0-100 %) of one energy source (mod_locations §8.4.7)."""

    source: OpenEnum  # an EnergySourceCategory value
    percentage: Decimal


class EnvironmentalImpact(OcpiStruct):
    """Amount of one environmental impact in g/kWh (mod_locations §8.4.9)."""

    category: OpenEnum  # an EnvironmentalImpactCategory value
    amount: Decimal


class EnergyMix(OcpiStruct):
    """Energy supplied at a location or with a tariff (mod_locations §8.4.6)."""

    is_green_energy: bool
    energy_sources: list[EnergySource] | None = None
    environ_impact: list[EnvironmentalImpact] | None = None
    supplier_name: String64 | None = None
    energy_product_name: String64 | None = None


class ExceptionalPeriod(OcpiStruct):
    """A UTC period of exceptional opening or closing (mod_locations §8.4.11)."""

    period_begin: DateTime
    period_end: DateTime


class RegularHours(OcpiStruct):
    """Weekly opening period in local time; weekday 1 = Monday .. 7 = Sunday (mod_locations §8.4.21)."""

    weekday: Annotated[int, Meta(ge=1, le=7)]
    period_begin: HourMinute
    period_end: HourMinute


class Hours(OcpiStruct):
    """Opening times (mod_locations §8.4.14)."""

    twentyfourseven: bool
    regular_hours: list[RegularHours] | None = None
    exceptional_openings: list[ExceptionalPeriod] | None = None
    exceptional_closings: list[ExceptionalPeriod] | None = None


class PublishTokenType(OcpiStruct):
    """A token (or group) a non-public location may be shown to (mod_locations §8.4.20)."""

    uid: CiString36 | None = None
    type: TokenType | None = None
    visual_number: String64 | None = None
    issuer: String64 | None = None
    group_id: CiString36 | None = None


class StatusSchedule(OcpiStruct):
    """Planned EVSE status for a period (mod_locations §8.4.23)."""

    period_begin: DateTime
    period_end: DateTime | None = None
    status: Status


class Connector(OcpiStruct):
    """A connector of an EVSE (mod_locations §8.3.3)."""

    id: CiString36
    standard: OpenEnum  # a ConnectorType value
    format: OpenEnum  # a ConnectorFormat value
    power_type: OpenEnum  # a PowerType value
    max_voltage: int
    max_amperage: int
    max_electric_power: int | None = None
    tariff_ids: list[CiString36] | None = None
    terms_and_conditions: URL | None = None
    last_updated: DateTime


class EVSE(OcpiStruct):
    """An EVSE of a location; at least one connector (mod_locations §8.3.2)."""

    uid: CiString36
    evse_id: CiString48 | None = None
    status: Status
    status_schedule: list[StatusSchedule] | None = None
    capabilities: list[OpenEnum] | None = None  # Capability values
    connectors: Annotated[list[Connector], Meta(min_length=1)]
    floor_level: String4 | None = None
    coordinates: GeoLocation | None = None
    physical_reference: String16 | None = None
    directions: list[DisplayText] | None = None
    parking_restrictions: list[OpenEnum] | None = None  # ParkingRestriction values
    images: list[Image] | None = None
    last_updated: DateTime


class Location(OcpiStruct):
    """A charging location owned by a CPO (mod_locations §8.3.1)."""

    country_code: CountryCode
    party_id: PartyId
    id: CiString36
    publish: bool
    publish_allowed_to: list[PublishTokenType] | None = None
    name: String255 | None = None
    address: String255  # 255 on the bugfix branch (was 45)
    city: String45
    postal_code: String10 | None = None
    state: String45 | None = None  # 45 on the bugfix branch (was 20)
    country: String3
    coordinates: GeoLocation
    related_locations: list[AdditionalGeoLocation] | None = None
    parking_type: OpenEnum | None = None  # a ParkingType value
    evses: list[EVSE] | None = None
    directions: list[DisplayText] | None = None
    operator: BusinessDetails | None = None
    suboperator: BusinessDetails | None = None
    owner: BusinessDetails | None = None
    facilities: list[OpenEnum] | None = None  # Facility values
    time_zone: String255
    opening_times: Hours | None = None
    charging_when_closed: bool | None = None
    images: list[Image] | None = None
    energy_mix: EnergyMix | None = None
    last_updated: DateTime


# --- PATCH bodies (transport §4.1.4.3, mod_locations §8.2.2.3) -------------------------------


class ConnectorPatch(OcpiStruct):
    """Partial update of a Connector; only ``last_updated`` is required."""

    id: CiString36 | UnsetType = UNSET
    standard: OpenEnum | UnsetType = UNSET
    format: OpenEnum | UnsetType = UNSET
    power_type: OpenEnum | UnsetType = UNSET
    max_voltage: int | UnsetType = UNSET
    max_amperage: int | UnsetType = UNSET
    max_electric_power: int | UnsetType | None = UNSET
    tariff_ids: list[CiString36] | UnsetType | None = UNSET
    terms_and_conditions: URL | UnsetType | None = UNSET
    last_updated: DateTime


class EvsePatch(OcpiStruct):
    """Partial update of an EVSE; only ``last_updated`` is required (status REMOVED deletes, §8.1)."""

    uid: CiString36 | UnsetType = UNSET
    evse_id: CiString48 | UnsetType | None = UNSET
    status: Status | UnsetType = UNSET
    status_schedule: list[StatusSchedule] | UnsetType | None = UNSET
    capabilities: list[OpenEnum] | UnsetType | None = UNSET
    connectors: Annotated[list[Connector], Meta(min_length=1)] | UnsetType = UNSET
    floor_level: String4 | UnsetType | None = UNSET
    coordinates: GeoLocation | UnsetType | None = UNSET
    physical_reference: String16 | UnsetType | None = UNSET
    directions: list[DisplayText] | UnsetType | None = UNSET
    parking_restrictions: list[OpenEnum] | UnsetType | None = UNSET
    images: list[Image] | UnsetType | None = UNSET
    last_updated: DateTime


class LocationPatch(OcpiStruct):
    """Partial update of a Location; only ``last_updated`` is required."""

    country_code: CountryCode | UnsetType = UNSET
    party_id: PartyId | UnsetType = UNSET
    id: CiString36 | UnsetType = UNSET
    publish: bool | UnsetType = UNSET
    publish_allowed_to: list[PublishTokenType] | UnsetType | None = UNSET
    name: String255 | UnsetType | None = UNSET
    address: String255 | UnsetType = UNSET
    city: String45 | UnsetType = UNSET
    postal_code: String10 | UnsetType | None = UNSET
    state: String45 | UnsetType | None = UNSET
    country: String3 | UnsetType = UNSET
    coordinates: GeoLocation | UnsetType = UNSET
    related_locations: list[AdditionalGeoLocation] | UnsetType | None = UNSET
    parking_type: OpenEnum | UnsetType | None = UNSET
    evses: list[EVSE] | UnsetType | None = UNSET
    directions: list[DisplayText] | UnsetType | None = UNSET
    operator: BusinessDetails | UnsetType | None = UNSET
    suboperator: BusinessDetails | UnsetType | None = UNSET
    owner: BusinessDetails | UnsetType | None = UNSET
    facilities: list[OpenEnum] | UnsetType | None = UNSET
    time_zone: String255 | UnsetType = UNSET
    opening_times: Hours | UnsetType | None = UNSET
    charging_when_closed: bool | UnsetType | None = UNSET
    images: list[Image] | UnsetType | None = UNSET
    energy_mix: EnergyMix | UnsetType | None = UNSET
    last_updated: DateTime
