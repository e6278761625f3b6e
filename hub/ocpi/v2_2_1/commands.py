"""Commands module objects (mod_commands §13): the five command requests, the CPO's synchronous
response and the asynchronous result.

Enum choices: `CommandType`, `CommandResponseType` and `CommandResultType` are strict `StrEnum`s:
the hub routes commands by type and tracks their outcome.
"""

from __future__ import annotations

from enum import StrEnum

from hub.ocpi.types import URL, CiString36, DateTime, DisplayText, OcpiStruct
from hub.ocpi.v2_2_1.tokens import Token

__all__ = [
    "CancelReservation",
    "CommandResponse",
    "CommandResponseType",
    "CommandResult",
    "CommandResultType",
    "CommandType",
    "ReserveNow",
    "StartSession",
    "StopSession",
    "UnlockConnector",
]


class CommandType(StrEnum):
    """The command, also the last segment of the command URL (mod_commands §13.4.3)."""

    CANCEL_RESERVATION = "CANCEL_RESERVATION"
    RESERVE_NOW = "RESERVE_NOW"
    START_SESSION = "START_SESSION"
    STOP_SESSION = "STOP_SESSION"
    UNLOCK_CONNECTOR = "UNLOCK_CONNECTOR"


class CommandResponseType(StrEnum):
    """The CPO's synchronous answer to a command request (mod_commands §13.4.1)."""

    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    ACCEPTED = "ACCEPTED"
    UNKNOWN_SESSION = "UNKNOWN_SESSION"


class CommandResultType(StrEnum):
    """The charge point's asynchronous result of a command (mod_commands §13.4.2)."""

    ACCEPTED = "ACCEPTED"
    CANCELED_RESERVATION = "CANCELED_RESERVATION"
    EVSE_OCCUPIED = "EVSE_OCCUPIED"
    EVSE_INOPERATIVE = "EVSE_INOPERATIVE"
    FAILED = "FAILED"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    TIMEOUT = "TIMEOUT"
    UNKNOWN_RESERVATION = "UNKNOWN_RESERVATION"


class CancelReservation(OcpiStruct):
    """Request to cancel a reservation (mod_commands §13.3.1)."""

    response_url: URL
    reservation_id: CiString36


class CommandResponse(OcpiStruct):
    """Synchronous answer with the timeout for the result, in seconds (mod_commands §13.3.2)."""

    result: CommandResponseType
    timeout: int
    message: list[DisplayText] | None = None


class CommandResult(OcpiStruct):
    """Asynchronous result POSTed to the ``response_url`` (mod_commands §13.3.3)."""

    result: CommandResultType
    message: list[DisplayText] | None = None


class ReserveNow(OcpiStruct):
    """Request to reserve an EVSE until ``expiry_date`` (mod_commands §13.3.4)."""

    response_url: URL
    token: Token
    expiry_date: DateTime
    reservation_id: CiString36
    location_id: CiString36
    evse_uid: CiString36 | None = None
    authorization_reference: CiString36 | None = None


class StartSession(OcpiStruct):
    """Request to start a session (mod_commands §13.3.5)."""

    response_url: URL
    token: Token
    location_id: CiString36
    evse_uid: CiString36 | None = None
    connector_id: CiString36 | None = None
    authorization_reference: CiString36 | None = None


class StopSession(OcpiStruct):
    """Request to stop a session (mod_commands §13.3.6)."""

    response_url: URL
    session_id: CiString36


class UnlockConnector(OcpiStruct):
    """Request to unlock a connector (mod_commands §13.3.7)."""

    response_url: URL
    location_id: CiString36
    evse_uid: CiString36
    connector_id: CiString36
