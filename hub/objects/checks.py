"""The checks every stored OCPI body passes: decoding with its wire Struct, and the URL's ids against the body's.

Shared by the store (`hub.objects.service`) and the routed writes checked in their requests (`hub.objects.bulk`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from msgspec import UnsetType

from hub.objects.errors import InvalidObjectError, invalid_body
from hub.ocpi.codec import WireError, decode
from hub.ocpi.types import ci_key

T = TypeVar("T")


def decode_body(body: bytes, type_: type[T]) -> T:
    """``body`` as ``type_``; a body that is not JSON or not that object is `InvalidObjectError` (2001)."""
    try:
        return decode(body, type_)
    except WireError as exc:
        raise invalid_body(exc) from None


def check_id(field: str, url_value: str, body_value: str | UnsetType, *, source: str = "the URL") -> None:
    # transport_and_format, Client Owned Object Push (Errors): the URL's country_code, party_id and object id must be
    # those of the body; CiStrings, so compared case-insensitively (types §16.1).
    if isinstance(body_value, UnsetType) or ci_key(url_value) == ci_key(body_value):
        return
    raise InvalidObjectError(f"{field} {body_value!r} in the body does not match {url_value!r} in {source}")


def check_owner(country_code: str, party_id: str, body: Any, *, source: str = "the URL") -> None:
    check_id("country_code", country_code, body.country_code, source=source)
    check_id("party_id", party_id, body.party_id, source=source)
