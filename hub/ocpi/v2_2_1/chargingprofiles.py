"""ChargingProfiles module objects (mod_charging_profiles §14).

Enum choices: the hub only relays smart charging, so `ChargingRateUnit`,
`ChargingProfileResponseType` and `ChargingProfileResultType` fields are open strings; the
`StrEnum` classes name the known values.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from hub.ocpi.types import URL, DateTime, OcpiStruct, OpenEnum

__all__ = [
    "ActiveChargingProfile",
    "ActiveChargingProfileResult",
    "ChargingProfile",
    "ChargingProfilePeriod",
    "ChargingProfileResponse",
    "ChargingProfileResponseType",
    "ChargingProfileResult",
    "ChargingProfileResultType",
    "ChargingRateUnit",
    "ClearProfileResult",
    "SetChargingProfile",
]


class ChargingRateUnit(StrEnum):
    """Unit of a charging profile limit: watts or amperes (mod_charging_profiles §14.6.2)."""

    W = "W"
    A = "A"


class ChargingProfileResponseType(StrEnum):
    """The CPO's synchronous answer to a charging profile request (mod_charging_profiles §14.6.5)."""

    ACCEPTED = "ACCEPTED"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    TOO_OFTEN = "TOO_OFTEN"
    UNKNOWN_SESSION = "UNKNOWN_SESSION"


class ChargingProfileResultType(StrEnum):
    """The EVSE's asynchronous result (mod_charging_profiles §14.6.6)."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"


class ChargingProfilePeriod(OcpiStruct):
    """A limit from ``start_period`` seconds after the profile start (mod_charging_profiles §14.6.4)."""

    start_period: int
    limit: Decimal


class ChargingProfile(OcpiStruct):
    """Power or current limits over time (mod_charging_profiles §14.6.3)."""

    start_date_time: DateTime | None = None
    duration: int | None = None
    charging_rate_unit: OpenEnum  # a ChargingRateUnit value
    min_charging_rate: Decimal | None = None
    charging_profile_period: list[ChargingProfilePeriod] | None = None


class ActiveChargingProfile(OcpiStruct):
    """The profile the charge point actually plans for a session (mod_charging_profiles §14.6.1)."""

    start_date_time: DateTime
    charging_profile: ChargingProfile


class ChargingProfileResponse(OcpiStruct):
    """Synchronous answer with the timeout for the result, in seconds (mod_charging_profiles §14.5.1)."""

    result: OpenEnum  # a ChargingProfileResponseType value
    timeout: int


class ActiveChargingProfileResult(OcpiStruct):
    """Asynchronous result of a GET ActiveChargingProfile (mod_charging_profiles §14.5.2)."""

    result: OpenEnum  # a ChargingProfileResultType value
    profile: ActiveChargingProfile | None = None


class ChargingProfileResult(OcpiStruct):
    """Asynchronous result of a set profile request (mod_charging_profiles §14.5.3)."""

    result: OpenEnum  # a ChargingProfileResultType value


class ClearProfileResult(OcpiStruct):
    """Asynchronous result of a clear profile request (mod_charging_profiles §14.5.4)."""

    result: OpenEnum  # a ChargingProfileResultType value


class SetChargingProfile(OcpiStruct):
    """Request to set a charging profile on a session (mod_charging_profiles §14.5.5)."""

    charging_profile: ChargingProfile
    response_url: URL
