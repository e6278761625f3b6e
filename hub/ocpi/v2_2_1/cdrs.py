"""CDRs module objects (mod_cdrs §10), including the classes Sessions reuse (CdrToken, ChargingPeriod).

CDRs cannot be updated (mod_cdrs §10.2: PATCH n/a), so there is no PATCH body. Length limits follow
the 2.2.1 bugfix branch: CdrLocation ``address`` stays string(45) and ``state`` string(20), while
SignedValue ``plain_data`` grows to string(5000) (hub notes §0 errata).

Enum choices: `AuthMethod` and `CdrDimensionType` are strict `StrEnum`s (authorisation and
clearing act on them); CdrLocation's connector fields are open strings like in Locations.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from msgspec import Meta

from hub.ocpi.types import (
    CiString32,
    CiString36,
    CiString39,
    CiString48,
    CountryCode,
    DateTime,
    OcpiStruct,
    OpenEnum,
    PartyId,
    Price,
    String3,
    String10,
    String20,
    String45,
    String255,
    String512,
    String5000,
)
from hub.ocpi.v2_2_1.common import TokenType
from hub.ocpi.v2_2_1.locations import GeoLocation
from hub.ocpi.v2_2_1.tariffs import Tariff

__all__ = [
    "CDR",
    "AuthMethod",
    "CdrDimension",
    "CdrDimensionType",
    "CdrLocation",
    "CdrToken",
    "ChargingPeriod",
    "SignedData",
    "SignedValue",
]


class AuthMethod(StrEnum):
    """How a session was authorised (mod_cdrs §10.4.1)."""

    AUTH_REQUEST = "AUTH_REQUEST"
    COMMAND = "COMMAND"
    WHITELIST = "WHITELIST"


class CdrDimensionType(StrEnum):
    """What a CDR dimension measures (mod_cdrs §10.4.3)."""

    CURRENT = "CURRENT"
    ENERGY = "ENERGY"
    ENERGY_EXPORT = "ENERGY_EXPORT"
    ENERGY_IMPORT = "ENERGY_IMPORT"
    MAX_CURRENT = "MAX_CURRENT"
    MIN_CURRENT = "MIN_CURRENT"
    MAX_POWER = "MAX_POWER"
    MIN_POWER = "MIN_POWER"
    PARKING_TIME = "PARKING_TIME"
    POWER = "POWER"
    RESERVATION_TIME = "RESERVATION_TIME"
    STATE_OF_CHARGE = "STATE_OF_CHARGE"
    TIME = "TIME"


class CdrDimension(OcpiStruct):
    """One measured volume of a charging period (mod_cdrs §10.4.2)."""

    type: CdrDimensionType
    volume: Decimal


class ChargingPeriod(OcpiStruct):
    """A period of a session with its measured dimensions (mod_cdrs §10.4.6)."""

    start_date_time: DateTime
    dimensions: Annotated[list[CdrDimension], Meta(min_length=1)]
    tariff_id: CiString36 | None = None


class CdrToken(OcpiStruct):
    """The token that started a session, as recorded in Sessions and CDRs (mod_cdrs §10.4.5)."""

    country_code: CountryCode
    party_id: PartyId
    uid: CiString36
    type: TokenType
    contract_id: CiString36


class CdrLocation(OcpiStruct):
    """The location, EVSE and connector a CDR was charged at (mod_cdrs §10.4.4)."""

    id: CiString36
    name: String255 | None = None
    address: String45  # still 45 on the bugfix branch (Location.address became 255)
    city: String45
    postal_code: String10 | None = None
    state: String20 | None = None  # still 20 on the bugfix branch
    country: String3
    coordinates: GeoLocation
    evse_uid: CiString36
    evse_id: CiString48
    connector_id: CiString36
    connector_standard: OpenEnum  # a ConnectorType value
    connector_format: OpenEnum  # a ConnectorFormat value
    connector_power_type: OpenEnum  # a PowerType value


class SignedValue(OcpiStruct):
    """One signed meter value (mod_cdrs §10.4.8); plain_data is string(5000) on the bugfix branch."""

    nature: CiString32
    plain_data: String5000
    signed_data: String5000


class SignedData(OcpiStruct):
    """Signed meter data for calibration-law verification (mod_cdrs §10.4.7)."""

    encoding_method: CiString36
    encoding_method_version: int | None = None
    public_key: String512 | None = None
    signed_values: Annotated[list[SignedValue], Meta(min_length=1)]
    url: String512 | None = None


class CDR(OcpiStruct):
    """A charge detail record (mod_cdrs §10.3.1); amounts and volumes are Decimal."""

    country_code: CountryCode
    party_id: PartyId
    id: CiString39
    start_date_time: DateTime
    end_date_time: DateTime
    session_id: CiString36 | None = None
    cdr_token: CdrToken
    auth_method: AuthMethod
    authorization_reference: CiString36 | None = None
    cdr_location: CdrLocation
    meter_id: String255 | None = None
    currency: String3
    tariffs: list[Tariff] | None = None
    charging_periods: Annotated[list[ChargingPeriod], Meta(min_length=1)]
    signed_data: SignedData | None = None
    total_cost: Price
    total_fixed_cost: Price | None = None
    total_energy: Decimal
    total_energy_cost: Price | None = None
    total_time: Decimal
    total_time_cost: Price | None = None
    total_parking_time: Decimal | None = None
    total_parking_cost: Price | None = None
    total_reservation_cost: Price | None = None
    remark: String255 | None = None
    invoice_reference_id: CiString39 | None = None
    credit: bool | None = None
    credit_reference_id: CiString39 | None = None
    home_charging_compensation: bool | None = None
    last_updated: DateTime
