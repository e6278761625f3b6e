"""Versions module objects (version_information_endpoint §6).

Enum choices: `InterfaceRole` is a strict `StrEnum` (the hub routes on it). `ModuleID` and
`VersionNumber` are `StrEnum`s naming the known values, but the wire fields are open strings:
custom modules are explicitly allowed (§6.2.5.1), and a partner that also speaks OCPI 2.3.0 lists
that version, which must not make its whole versions list undecodable.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from msgspec import Meta

from hub.ocpi.types import URL, OcpiStruct, OpenEnum

__all__ = ["Endpoint", "InterfaceRole", "ModuleID", "Version", "VersionDetails", "VersionNumber"]


class VersionNumber(StrEnum):
    """Known OCPI versions (§6.2.5); the deprecated 2.1 and 2.2 still appear in the wild."""

    V2_0 = "2.0"
    V2_1 = "2.1"
    V2_1_1 = "2.1.1"
    V2_2 = "2.2"
    V2_2_1 = "2.2.1"


class InterfaceRole(StrEnum):
    """Which side of a module an endpoint implements (§6.2.3)."""

    SENDER = "SENDER"
    RECEIVER = "RECEIVER"


class ModuleID(StrEnum):
    """The standard module identifiers (§6.2.4); `Endpoint.identifier` also takes custom ids (§6.2.5.1)."""

    CDRS = "cdrs"
    CHARGING_PROFILES = "chargingprofiles"
    COMMANDS = "commands"
    CREDENTIALS = "credentials"
    HUB_CLIENT_INFO = "hubclientinfo"
    LOCATIONS = "locations"
    SESSIONS = "sessions"
    TARIFFS = "tariffs"
    TOKENS = "tokens"


class Version(OcpiStruct):
    """One supported version and the URL of its details (§6.1.2)."""

    version: OpenEnum  # a VersionNumber value; open on purpose, see the module docstring
    url: URL


class Endpoint(OcpiStruct):
    """One module endpoint of a version (§6.2.2)."""

    identifier: OpenEnum  # a ModuleID value or a custom module id (§6.2.5.1)
    role: InterfaceRole
    url: URL


class VersionDetails(OcpiStruct):
    """The endpoints of one version (§6.2.1); at least one endpoint."""

    version: OpenEnum
    endpoints: Annotated[list[Endpoint], Meta(min_length=1)]
