"""Tokens module objects (mod_tokens §12): Token, its PATCH body and real-time authorisation.

Enum choices: `TokenType` (defined in `common` to avoid an import cycle), `WhitelistType` and
`AllowedType` are strict `StrEnum`s because the hub authorises on them. ``default_profile_type``
is an open string (a `ProfileType` value) because the hub only relays it.

`TokenPatch` follows the rule of `hub.ocpi.v2_2_1.locations`: fields default to `msgspec.UNSET`,
``last_updated`` is required (mod_tokens §12.2.1.3).
"""

from __future__ import annotations

from enum import StrEnum

from msgspec import UNSET, UnsetType

from hub.ocpi.types import (
    CiString36,
    CountryCode,
    DateTime,
    DisplayText,
    LanguageCode,
    OcpiStruct,
    OpenEnum,
    PartyId,
    String64,
)
from hub.ocpi.v2_2_1.common import TokenType

__all__ = [
    "AllowedType",
    "AuthorizationInfo",
    "EnergyContract",
    "LocationReferences",
    "Token",
    "TokenPatch",
    "TokenType",
    "WhitelistType",
]


class AllowedType(StrEnum):
    """Outcome of a real-time authorisation (mod_tokens §12.4.1)."""

    ALLOWED = "ALLOWED"
    BLOCKED = "BLOCKED"
    EXPIRED = "EXPIRED"
    NO_CREDIT = "NO_CREDIT"
    NOT_ALLOWED = "NOT_ALLOWED"


class WhitelistType(StrEnum):
    """How a CPO may whitelist a token (mod_tokens §12.4.5)."""

    ALWAYS = "ALWAYS"
    ALLOWED = "ALLOWED"
    ALLOWED_OFFLINE = "ALLOWED_OFFLINE"
    NEVER = "NEVER"


class EnergyContract(OcpiStruct):
    """The driver's own energy supplier contract (mod_tokens §12.4.2)."""

    supplier_name: String64
    contract_id: String64 | None = None


class LocationReferences(OcpiStruct):
    """Where a token wants to charge, sent with a real-time authorisation (mod_tokens §12.4.3)."""

    location_id: CiString36
    evse_uids: list[CiString36] | None = None


class Token(OcpiStruct):
    """A driver token owned by an eMSP (mod_tokens §12.3.2)."""

    country_code: CountryCode
    party_id: PartyId
    uid: CiString36
    type: TokenType
    contract_id: CiString36
    visual_number: String64 | None = None
    issuer: String64
    group_id: CiString36 | None = None
    valid: bool
    whitelist: WhitelistType
    language: LanguageCode | None = None
    default_profile_type: OpenEnum | None = None  # a ProfileType value
    energy_contract: EnergyContract | None = None
    last_updated: DateTime


class AuthorizationInfo(OcpiStruct):
    """The eMSP's answer to a real-time authorisation request (mod_tokens §12.3.1)."""

    allowed: AllowedType
    token: Token
    location: LocationReferences | None = None
    authorization_reference: CiString36 | None = None
    info: DisplayText | None = None


class TokenPatch(OcpiStruct):
    """Partial update of a Token, e.g. ``valid: false``; only ``last_updated`` is required (§12.2.1.3)."""

    country_code: CountryCode | UnsetType = UNSET
    party_id: PartyId | UnsetType = UNSET
    uid: CiString36 | UnsetType = UNSET
    type: TokenType | UnsetType = UNSET
    contract_id: CiString36 | UnsetType = UNSET
    visual_number: String64 | UnsetType | None = UNSET
    issuer: String64 | UnsetType = UNSET
    group_id: CiString36 | UnsetType | None = UNSET
    valid: bool | UnsetType = UNSET
    whitelist: WhitelistType | UnsetType = UNSET
    language: LanguageCode | UnsetType | None = UNSET
    default_profile_type: OpenEnum | UnsetType | None = UNSET
    energy_contract: EnergyContract | UnsetType | None = UNSET
    last_updated: DateTime
