"""Errors of the object store: `OcpiError` subclasses, so the web layer answers them with the OCPI envelope.

2001 for bodies that are not valid or do not match their URL (transport_and_format, Client Owned Object Push: Errors),
HTTP 400 when the body is not JSON at all (status_codes: "400 - Bad request" MUST); 2003 for a Location, EVSE or
Connector the hub does not have.
"""

from __future__ import annotations

from hub.ocpi.codec import InvalidJson, WireError
from hub.ocpi.envelope import OcpiStatus
from hub.platform.web import OcpiError

__all__ = ["CdrConflictError", "InvalidObjectError", "UnknownLocationError", "UnknownObjectError", "invalid_body"]


class InvalidObjectError(OcpiError):
    """Invalid or missing parameters (2001): a malformed body, a missing field, a URL/body id mismatch."""

    def __init__(self, message: str, *, http_status: int = 200) -> None:
        super().__init__(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, message, http_status=http_status)


class UnknownObjectError(OcpiError):
    """A PATCH of a Session or Token the hub does not hold (2001: the sender should GET and PUT it, transport PATCH)."""

    def __init__(self, message: str) -> None:
        super().__init__(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, message)


class UnknownLocationError(OcpiError):
    """A Location, EVSE or Connector the hub does not hold (2003 unknown Location)."""

    def __init__(self, message: str) -> None:
        super().__init__(OcpiStatus.UNKNOWN_LOCATION, message)


class CdrConflictError(OcpiError):
    """A second CDR with the id of a stored one but other content (mod_cdrs §10.1: CDRs never change)."""

    def __init__(self, message: str) -> None:
        super().__init__(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, message)


def invalid_body(exc: WireError) -> InvalidObjectError:
    """Map a codec error: not JSON → 2001 with HTTP 400 (status_codes), wrong content → 2001 with HTTP 200."""
    if isinstance(exc, InvalidJson):
        return InvalidObjectError(exc.message, http_status=400)
    return InvalidObjectError(exc.message)
