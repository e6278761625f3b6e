"""The OCPI response envelope (transport §4.1.7) and status codes (status_codes §5).

Three ways to deal with an envelope:

* `OcpiResponse[T]` decodes/encodes a complete, typed envelope;
* `OcpiStatusView` reads only ``status_code``/``status_message`` of a partner response, skipping
  ``data`` without building Python objects for it, and `OcpiRawResponse` keeps ``data`` as
  `msgspec.Raw` bytes; both let the hub relay partner data untouched (hub notes §1.7);
* `envelope_bytes` wraps already-encoded data bytes in an envelope by concatenation, without
  decoding or re-encoding them.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Generic, TypeVar

import msgspec

from hub.ocpi.types import DateTime, OcpiStruct, format_datetime

__all__ = ["NO_DATA", "OcpiRawResponse", "OcpiResponse", "OcpiStatus", "OcpiStatusView", "envelope_bytes"]

T = TypeVar("T")

#: Value of `OcpiRawResponse.data` when the partner sent no ``data`` member.
NO_DATA = msgspec.Raw(b"null")


class OcpiStatus(IntEnum):
    """Every OCPI 2.2.1 status code (status_codes §5.1-§5.4).

    Custom codes (19xx, 29xx, 39xx, 49xx) are legal on the wire, which is why envelope fields are
    typed `int` rather than `OcpiStatus`.
    """

    SUCCESS = 1000
    CLIENT_ERROR = 2000
    INVALID_OR_MISSING_PARAMETERS = 2001
    NOT_ENOUGH_INFORMATION = 2002
    UNKNOWN_LOCATION = 2003
    UNKNOWN_TOKEN = 2004
    SERVER_ERROR = 3000
    UNABLE_TO_USE_CLIENT_API = 3001
    UNSUPPORTED_VERSION = 3002
    NO_MATCHING_ENDPOINTS = 3003
    HUB_ERROR = 4000
    UNKNOWN_RECEIVER = 4001
    TIMEOUT_ON_FORWARDED_REQUEST = 4002
    CONNECTION_PROBLEM = 4003


class OcpiResponse(OcpiStruct, Generic[T]):
    """Response envelope (transport §4.1.7); parametrise with the data type, e.g. ``OcpiResponse[list[Token]]``.

    ``data`` is optional: the spec leaves it unspecified on errors and for several endpoints asks
    the sender to omit it, so it is absent/``None`` in those cases.
    """

    data: T | None = None
    status_code: int
    status_message: str | None = None
    timestamp: DateTime


class OcpiStatusView(OcpiStruct):
    """Just the outcome of a partner response; ``data`` and ``timestamp`` are skipped, not validated."""

    status_code: int
    status_message: str | None = None


class OcpiRawResponse(OcpiStruct):
    """A partner envelope whose ``data`` stays as raw JSON bytes for pass-through.

    ``timestamp`` is optional here so that a relay can still forward a partner's data when the
    partner forgets it (tolerant reader, transport §4.1.5.1). An absent ``data`` decodes to
    `NO_DATA` (the bytes ``null``) because msgspec cannot put `Raw` in a union with ``None``.
    """

    data: msgspec.Raw = NO_DATA
    status_code: int
    status_message: str | None = None
    timestamp: DateTime | None = None


def envelope_bytes(
    status: int, *, data_json: bytes | None = None, message: str | None = None, timestamp: datetime
) -> bytes:
    """Build an envelope around already-encoded ``data_json`` (copied byte for byte, not parsed).

    ``data`` is omitted when ``data_json`` is None (transport §4.1.7: senders omit data where the
    spec defines none); the caller guarantees ``data_json`` is one valid JSON value.
    """
    parts: list[bytes] = [b"{"]
    if data_json is not None:
        parts += [b'"data":', data_json, b","]
    parts += [b'"status_code":', str(int(status)).encode("ascii")]
    if message is not None:
        parts += [b',"status_message":', msgspec.json.encode(message)]
    parts += [b',"timestamp":"', format_datetime(timestamp).encode("ascii"), b'"}']
    return b"".join(parts)
