"""Sessions module objects (mod_sessions §9): Session, its PATCH body and charging preferences.

Enum choices: `SessionStatus` is a strict `StrEnum` (the hub acts on session state). `ProfileType`
(defined in `common` to avoid an import cycle) and `ChargingPreferencesResponse` are only relayed,
so their fields are open strings and the `StrEnum` classes name the known values.

`SessionPatch` follows the rule of `hub.ocpi.v2_2_1.locations`: fields default to `msgspec.UNSET`,
``last_updated`` is required (mod_sessions §9.2.2.3). A PATCH with ``charging_periods`` appends
them to the stored list rather than replacing it (same section); that is the applier's job.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from msgspec import UNSET, UnsetType

from hub.ocpi.types import CiString36, CountryCode, DateTime, OcpiStruct, OpenEnum, PartyId, Price, String3, String255
from hub.ocpi.v2_2_1.cdrs import AuthMethod, CdrToken, ChargingPeriod
from hub.ocpi.v2_2_1.common import ProfileType

__all__ = [
    "ChargingPreferences",
    "ChargingPreferencesResponse",
    "ProfileType",
    "Session",
    "SessionPatch",
    "SessionStatus",
]


class ChargingPreferencesResponse(StrEnum):
    """CPO answer to a charging preferences PUT (mod_sessions §9.4.1)."""

    ACCEPTED = "ACCEPTED"
    DEPARTURE_REQUIRED = "DEPARTURE_REQUIRED"
    ENERGY_NEED_REQUIRED = "ENERGY_NEED_REQUIRED"
    NOT_POSSIBLE = "NOT_POSSIBLE"
    PROFILE_TYPE_NOT_SUPPORTED = "PROFILE_TYPE_NOT_SUPPORTED"


class SessionStatus(StrEnum):
    """State of a charging session (mod_sessions §9.4.3)."""

    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    INVALID = "INVALID"
    PENDING = "PENDING"
    RESERVATION = "RESERVATION"


class ChargingPreferences(OcpiStruct):
    """Driver's smart charging wishes for a session (mod_sessions §9.3.2)."""

    profile_type: OpenEnum  # a ProfileType value
    departure_time: DateTime | None = None
    energy_need: Decimal | None = None
    discharge_allowed: bool | None = None


class Session(OcpiStruct):
    """A charging session owned by a CPO (mod_sessions §9.3.1); kWh and costs are Decimal."""

    country_code: CountryCode
    party_id: PartyId
    id: CiString36
    start_date_time: DateTime
    end_date_time: DateTime | None = None
    kwh: Decimal
    cdr_token: CdrToken
    auth_method: AuthMethod
    authorization_reference: CiString36 | None = None
    location_id: CiString36
    evse_uid: CiString36
    connector_id: CiString36
    meter_id: String255 | None = None
    currency: String3
    charging_periods: list[ChargingPeriod] | None = None
    total_cost: Price | None = None
    status: SessionStatus
    last_updated: DateTime


class SessionPatch(OcpiStruct):
    """Partial update of a Session; only ``last_updated`` is required (mod_sessions §9.2.2.3)."""

    country_code: CountryCode | UnsetType = UNSET
    party_id: PartyId | UnsetType = UNSET
    id: CiString36 | UnsetType = UNSET
    start_date_time: DateTime | UnsetType = UNSET
    end_date_time: DateTime | UnsetType | None = UNSET
    kwh: Decimal | UnsetType = UNSET
    cdr_token: CdrToken | UnsetType = UNSET
    auth_method: AuthMethod | UnsetType = UNSET
    authorization_reference: CiString36 | UnsetType | None = UNSET
    location_id: CiString36 | UnsetType = UNSET
    evse_uid: CiString36 | UnsetType = UNSET
    connector_id: CiString36 | UnsetType = UNSET
    meter_id: String255 | UnsetType | None = UNSET
    currency: String3 | UnsetType = UNSET
    charging_periods: list[ChargingPeriod] | UnsetType | None = UNSET
    total_cost: Price | UnsetType | None = UNSET
    status: SessionStatus | UnsetType = UNSET
    last_updated: DateTime
