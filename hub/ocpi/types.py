"""Base Struct, constrained string aliases and the shared OCPI 2.2.1 types (types §16).

Design choices:

* `OcpiStruct` is keyword-only, frozen, omits defaults when encoding and ignores unknown fields
  when decoding: 2.2.1 asks receivers to keep processing valid objects (transport §4.1.5.1) and
  2.3.0 makes tolerance of undocumented fields a SHALL, so partner extensions never break decoding.
* Optional (`?`) fields default to ``None``, so a JSON ``null`` and an absent field decode to the
  same value and both are omitted on encode (types §16 cardinality rules).
* `DateTime` is a `datetime` subclass that the codec decodes and encodes itself (via
  `dec_hook`/`enc_hook`), because msgspec's native datetime handling accepts ``+00:00`` offsets
  and emits six fraction digits, both of which OCPI forbids (types §16.2).
* Amounts are `decimal.Decimal`; the codec encodes them as JSON numbers (types §16.4).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final, Self, dataclass_transform

import msgspec
from msgspec import Meta

__all__ = [
    "URL",
    "CiString",
    "CiString2",
    "CiString3",
    "CiString4",
    "CiString15",
    "CiString20",
    "CiString32",
    "CiString36",
    "CiString39",
    "CiString48",
    "CiString64",
    "CiString255",
    "CountryCode",
    "DateTime",
    "DisplayText",
    "LanguageCode",
    "OcpiStruct",
    "OpenEnum",
    "PartyId",
    "Price",
    "String2",
    "String3",
    "String4",
    "String5",
    "String6",
    "String7",
    "String10",
    "String16",
    "String20",
    "String36",
    "String45",
    "String50",
    "String64",
    "String100",
    "String255",
    "String512",
    "String5000",
    "ci_key",
    "dec_hook",
    "enc_hook",
    "format_datetime",
    "parse_datetime",
]


class _OcpiStructMeta(msgspec.StructMeta):
    """Make every subclass keyword-only: msgspec applies ``kw_only`` per class, not by inheritance."""

    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> Any:
        kwargs.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, namespace, **kwargs)


# dataclass_transform tells type checkers what the metaclass does at runtime: keyword-only, frozen.
@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(msgspec.field,))
class OcpiStruct(
    msgspec.Struct,
    metaclass=_OcpiStructMeta,
    kw_only=True,
    omit_defaults=True,
    frozen=True,
    forbid_unknown_fields=False,
):
    """Base class of every OCPI wire object (house style §3.4).

    Keyword-only in every subclass, so required fields may follow optional ones in spec order.

    Unknown fields are ignored on decode (transport §4.1.5.1: process what is valid) and fields
    equal to their default (``None``/``UNSET``) are left out on encode.
    """


# --- strings (types §16.1 CiString, §16.7 string) -------------------------------------------

# CiString: printable ASCII only, i.e. U+0020..U+007E (types §16.1).
_PRINTABLE_ASCII: Final = r"^[\x20-\x7e]*$"
# string: printable UTF-8; control characters (C0, DEL, C1) such as CR/LF/TAB are excluded (types §16.7).
_PRINTABLE_UTF8: Final = r"^[^\x00-\x1f\x7f-\x9f]*$"


# Aliases are spelled out per length (a factory function would hide the type from mypy); mypy sees
# plain `str`, msgspec enforces the length and character set on decode.
#: CiString without a length limit (types §16.1); prefer the sized aliases below.
CiString = Annotated[str, Meta(pattern=_PRINTABLE_ASCII)]
CiString2 = Annotated[str, Meta(max_length=2, pattern=_PRINTABLE_ASCII)]
CiString3 = Annotated[str, Meta(max_length=3, pattern=_PRINTABLE_ASCII)]
CiString4 = Annotated[str, Meta(max_length=4, pattern=_PRINTABLE_ASCII)]
CiString15 = Annotated[str, Meta(max_length=15, pattern=_PRINTABLE_ASCII)]
CiString20 = Annotated[str, Meta(max_length=20, pattern=_PRINTABLE_ASCII)]
CiString32 = Annotated[str, Meta(max_length=32, pattern=_PRINTABLE_ASCII)]
CiString36 = Annotated[str, Meta(max_length=36, pattern=_PRINTABLE_ASCII)]
CiString39 = Annotated[str, Meta(max_length=39, pattern=_PRINTABLE_ASCII)]
CiString48 = Annotated[str, Meta(max_length=48, pattern=_PRINTABLE_ASCII)]
CiString64 = Annotated[str, Meta(max_length=64, pattern=_PRINTABLE_ASCII)]
CiString255 = Annotated[str, Meta(max_length=255, pattern=_PRINTABLE_ASCII)]

String2 = Annotated[str, Meta(max_length=2, pattern=_PRINTABLE_UTF8)]
String3 = Annotated[str, Meta(max_length=3, pattern=_PRINTABLE_UTF8)]
String4 = Annotated[str, Meta(max_length=4, pattern=_PRINTABLE_UTF8)]
String5 = Annotated[str, Meta(max_length=5, pattern=_PRINTABLE_UTF8)]
String6 = Annotated[str, Meta(max_length=6, pattern=_PRINTABLE_UTF8)]
String7 = Annotated[str, Meta(max_length=7, pattern=_PRINTABLE_UTF8)]
String10 = Annotated[str, Meta(max_length=10, pattern=_PRINTABLE_UTF8)]
String16 = Annotated[str, Meta(max_length=16, pattern=_PRINTABLE_UTF8)]
String20 = Annotated[str, Meta(max_length=20, pattern=_PRINTABLE_UTF8)]
String36 = Annotated[str, Meta(max_length=36, pattern=_PRINTABLE_UTF8)]
String45 = Annotated[str, Meta(max_length=45, pattern=_PRINTABLE_UTF8)]
String50 = Annotated[str, Meta(max_length=50, pattern=_PRINTABLE_UTF8)]
String64 = Annotated[str, Meta(max_length=64, pattern=_PRINTABLE_UTF8)]
String100 = Annotated[str, Meta(max_length=100, pattern=_PRINTABLE_UTF8)]
String255 = Annotated[str, Meta(max_length=255, pattern=_PRINTABLE_UTF8)]
String512 = Annotated[str, Meta(max_length=512, pattern=_PRINTABLE_UTF8)]
String5000 = Annotated[str, Meta(max_length=5000, pattern=_PRINTABLE_UTF8)]

#: ISO 3166-1 alpha-2 country code of a party (credentials §7.4.1: CiString(2)).
CountryCode = CiString2
#: Party id following ISO 15118 (credentials §7.4.1: CiString(3)).
PartyId = CiString3
#: URL is a string(255) (types §16.8).
URL = String255
#: ISO 639-1 language code (types §16.3: string(2)).
LanguageCode = String2

#: Value of an enum the hub only stores or relays (house style §3.4): any non-empty printable
#: ASCII text, so values added by partners or by OCPI 2.3.0 survive decoding and re-encoding.
#: The matching `StrEnum` class in the module still names the known values.
OpenEnum = Annotated[str, Meta(min_length=1, max_length=255, pattern=_PRINTABLE_ASCII)]

_ASCII_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ci_key(value: str) -> str:
    """Return the normalised key of a CiString for case-insensitive comparison and indexing.

    CiStrings compare case-insensitively (types §16.1). Only ASCII letters are folded, so the key of
    a valid CiString has the same length as the value; the original value is what gets forwarded.
    """
    return value.translate(_ASCII_UPPER)


# --- DateTime (types §16.2) ----------------------------------------------------------------

# Only YYYY-MM-DDThh:mm:ss with an optional fraction and an optional "Z" is allowed; no offsets.
_DATETIME_RE: Final = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})T(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d+))?(?P<z>Z)?",
    re.ASCII,
)
_OFFSET_RE: Final = re.compile(r"[+-]\d{2}:?\d{2}$|[+-]\d{2}$", re.ASCII)


class DateTime(datetime):
    """An OCPI DateTime: always timezone-aware UTC (types §16.2).

    Decoding accepts ``YYYY-MM-DDThh:mm:ss``, an optional fraction of any length (kept to
    microseconds) and an optional ``Z``; a missing designator means UTC. Numeric offsets, even
    ``+00:00``, are rejected because the spec says they are not equivalent to UTC. Encoding always
    emits ``Z`` and at most three fraction digits so the text stays within string(25).
    Construct values like any datetime: ``DateTime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)``,
    ``DateTime.now(UTC)`` or ``DateTime.from_datetime(aware_dt)``.
    """

    @classmethod
    def from_datetime(cls, value: datetime) -> Self:
        """Convert an aware datetime (any zone) to a UTC `DateTime`; naive values are rejected."""
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("DateTime needs a timezone-aware datetime (OCPI types §16.2: always UTC)")
        utc = value.astimezone(UTC)
        return cls(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC)


@functools.lru_cache(maxsize=4096)
def parse_datetime(text: str) -> DateTime:
    """Parse an OCPI DateTime string (types §16.2); raise ValueError with a precise reason.

    Cached: a CDR names the same moments many times (its start, its first period, the session's), and clearing
    reads each several times; a `DateTime` is immutable, so sharing one is safe. Errors are not cached.
    """
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        if _OFFSET_RE.search(text):
            raise ValueError(
                f"Invalid OCPI DateTime {text!r}: UTC offsets are not allowed, use 'Z' or no designator (types §16.2)"
            )
        raise ValueError(f"Invalid OCPI DateTime {text!r}: expected YYYY-MM-DDThh:mm:ss[.fraction][Z] (types §16.2)")
    fraction = match["f"] or ""
    # Fractions longer than a microsecond are truncated: datetime cannot hold more precision.
    micro = int((fraction + "000000")[:6])
    try:
        return DateTime(
            int(match["y"]),
            int(match["mo"]),
            int(match["d"]),
            int(match["h"]),
            int(match["mi"]),
            int(match["s"]),
            micro,
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise ValueError(f"Invalid OCPI DateTime {text!r}: {exc}") from None


def format_datetime(value: datetime) -> str:
    """Format an aware datetime as OCPI text: ``YYYY-MM-DDThh:mm:ss[.fff]Z`` (types §16.2).

    The value is converted to UTC; the fraction is truncated to milliseconds (never rounded up, so
    the seconds never change) and left out when zero. Naive datetimes are rejected.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("Cannot encode a naive datetime as OCPI DateTime (types §16.2: always UTC)")
    if value.utcoffset() != timedelta(0):
        value = value.astimezone(UTC)
    base = f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    millis = value.microsecond // 1000
    if millis:
        return f"{base}.{millis:03d}Z"
    return base + "Z"


def dec_hook(type_: type, obj: object) -> object:
    """Decode the custom wire types (used by `hub.ocpi.codec`)."""
    if type_ is DateTime:
        if not isinstance(obj, str):
            raise TypeError(f"Expected `str` holding an OCPI DateTime, got `{type(obj).__name__}`")
        return parse_datetime(obj)
    raise NotImplementedError(f"Objects of type {type_!r} are not supported")


def enc_hook(obj: object) -> object:
    """Encode the custom wire types (used by `hub.ocpi.codec`)."""
    if isinstance(obj, DateTime):
        return format_datetime(obj)
    raise NotImplementedError(f"Objects of type {type(obj)!r} are not supported")


# --- shared classes --------------------------------------------------------------------------


class DisplayText(OcpiStruct):
    """Text in one language (types §16.3)."""

    language: LanguageCode
    text: String512


class Price(OcpiStruct):
    """A price or cost, excluding and optionally including VAT (types §16.5); JSON numbers as Decimal."""

    excl_vat: Decimal
    incl_vat: Decimal | None = None
