"""Credentials module objects (credentials §7) and the business details they carry (mod_locations §8.4).

`BusinessDetails`, `Image` and `ImageCategory` are defined in the Locations chapter but live here,
because credentials need them first; the locations module reuses them.

Enum choices: `Role` is a strict `StrEnum` (types §16.6; the hub registers parties by role).
`ImageCategory` is only stored and relayed, so `Image.category` is an open string and the
`ImageCategory` `StrEnum` just names the known values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from msgspec import Meta

from hub.ocpi.types import URL, CiString4, CountryCode, OcpiStruct, OpenEnum, PartyId, String100

__all__ = [
    "BusinessDetails",
    "Credentials",
    "CredentialsRole",
    "CredentialsToken",
    "Image",
    "ImageCategory",
    "Role",
]

#: A credentials token: string(64) of printable non-whitespace ASCII, U+0021..U+007E (credentials §7.3.1).
CredentialsToken = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]


class Role(StrEnum):
    """The role a party plays (types §16.6)."""

    CPO = "CPO"
    EMSP = "EMSP"
    HUB = "HUB"
    NAP = "NAP"
    NSP = "NSP"
    OTHER = "OTHER"
    SCSP = "SCSP"


class ImageCategory(StrEnum):
    """What an image shows (mod_locations §8.4.16)."""

    CHARGER = "CHARGER"
    ENTRANCE = "ENTRANCE"
    LOCATION = "LOCATION"
    NETWORK = "NETWORK"
    OPERATOR = "OPERATOR"
    OTHER = "OTHER"
    OWNER = "OWNER"


class Image(OcpiStruct):
    """A link to an image (mod_locations §8.4.15); width/height are int(5)."""

    url: URL
    thumbnail: URL | None = None
    category: OpenEnum  # an ImageCategory value
    type: CiString4
    width: Annotated[int, Meta(ge=0, le=99999)] | None = None
    height: Annotated[int, Meta(ge=0, le=99999)] | None = None


class BusinessDetails(OcpiStruct):
    """Name, website and logo of an operator or party (mod_locations §8.4.2)."""

    name: String100
    website: URL | None = None
    logo: Image | None = None


class CredentialsRole(OcpiStruct):
    """One party (role + country code + party id) hosted by a platform (credentials §7.4.1)."""

    role: Role
    business_details: BusinessDetails
    party_id: PartyId
    country_code: CountryCode


class Credentials(OcpiStruct):
    """The credentials object exchanged during registration (credentials §7.3.1); at least one role."""

    token: CredentialsToken
    url: URL
    roles: Annotated[list[CredentialsRole], Meta(min_length=1)]
