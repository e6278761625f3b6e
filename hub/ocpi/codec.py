"""JSON codec for OCPI wire objects: cached msgspec decoders, one encoder, precise errors.

Decimals are encoded as JSON numbers (types §16.4) and `DateTime` is handled by the hooks in
`hub.ocpi.types` (types §16.2), so callers never deal with either themselves.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar, cast

import msgspec

from hub.ocpi.types import dec_hook, enc_hook

__all__ = ["NUL_REFUSED", "InvalidJson", "InvalidPayload", "WireError", "decode", "encode", "has_nul"]

T = TypeVar("T")


class WireError(Exception):
    """A payload that cannot be turned into the requested wire type."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidJson(WireError):  # noqa: N818 - the name is the agreed public API
    """The bytes are not JSON at all (transport §4.1.7: answer with HTTP 400)."""


class InvalidPayload(WireError):  # noqa: N818 - the name is the agreed public API
    """Valid JSON, but a field is missing or invalid; the message names the field path (status 2001)."""


_ENCODER: Final = msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="number")


# One decoder per requested type, built on first use. The set of wire types is small and fixed, so
# the cache is unbounded; a lost race just builds an equivalent decoder twice.
_DECODERS: dict[object, msgspec.json.Decoder[Any]] = {}


def _decoder(type_: object) -> msgspec.json.Decoder[Any]:
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS.setdefault(type_, msgspec.json.Decoder(type_, dec_hook=dec_hook))
    return decoder


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode JSON into ``type_``; raise `InvalidJson` or `InvalidPayload`."""
    try:
        value = cast("T", _decoder(type_).decode(data))
    except msgspec.ValidationError as exc:
        raise InvalidPayload(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidJson(str(exc)) from None
    if has_nul(data):
        raise InvalidPayload(NUL_REFUSED)
    return value


# JSON can carry U+0000 only as this escape. No OCPI string allows it (types §16: printable text), and PostgreSQL
# cannot store it in text or jsonb: let through, it turned a partner's typo into a 500 (the fuzz scenarios).
_NUL_ESCAPE: Final = "\\u0000"
_NUL_ESCAPE_BYTES: Final = _NUL_ESCAPE.encode()
NUL_REFUSED: Final = "a string holds the character U+0000, which no OCPI field allows"


def has_nul(data: bytes | str) -> bool:
    """Whether any string (key or value) of the JSON document ``data`` holds U+0000; ``data`` must be valid JSON.

    Documents without the escape (all but a rare few) are answered by one substring search; only the others are
    decoded and walked (an escaped backslash before ``u0000`` is six ordinary characters)."""
    absent = _NUL_ESCAPE_BYTES not in data if isinstance(data, bytes) else _NUL_ESCAPE not in data
    if absent:
        return False
    pending: list[Any] = [msgspec.json.decode(data)]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def encode(obj: object) -> bytes:
    """Encode a wire object (or any msgspec-supported value) to JSON bytes."""
    return _ENCODER.encode(obj)
