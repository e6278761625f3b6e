"""HubClientInfo module objects (mod_hub_client_info §15).

Enum choices: `ConnectionStatus` is a strict `StrEnum` (the hub sets it for every party); the
role reuses `Role` from the credentials module (types §16.6).
"""

from __future__ import annotations

from enum import StrEnum

from hub.ocpi.types import CountryCode, DateTime, OcpiStruct, PartyId
from hub.ocpi.v2_2_1.credentials import Role

__all__ = ["ClientInfo", "ConnectionStatus"]


class ConnectionStatus(StrEnum):
    """Connection state of a party behind the hub (mod_hub_client_info §15.5.1)."""

    CONNECTED = "CONNECTED"
    OFFLINE = "OFFLINE"
    PLANNED = "PLANNED"
    SUSPENDED = "SUSPENDED"


class ClientInfo(OcpiStruct):
    """One party connected to the hub and its connection status (mod_hub_client_info §15.4.1)."""

    party_id: PartyId
    country_code: CountryCode
    role: Role
    status: ConnectionStatus
    last_updated: DateTime
