"""Reading a CDR for clearing: its key, its canonical content hash, the lenient and the strict decodings.

Intake is liberal (DESIGN §5): a CDR that breaks the OCPI schema somewhere that does not affect its key is still taken
in, and the schema violation becomes a finding (rule CDR001) instead of a refusal. Only a payload that is not a JSON
object, or whose (country_code, party_id, id) is unusable, is refused. The canonical hash makes formatting
differences (whitespace, key order, ``1.5`` vs ``1.50``, ``null`` vs absent) the same content (ADR 0201), as the
object store does when it compares a replayed CDR.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec

from clearing.pricing import Cdr, InputError, cdr_from_builtins
from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import NUL_REFUSED, WireError, decode, has_nul
from hub.ocpi.types import ci_key, parse_datetime

__all__ = [
    "CdrKey",
    "ParsedCdr",
    "RefusedPayload",
    "WireProblem",
    "canonical_hash",
    "ci_text",
    "escape_pointer",
    "key_of",
    "load_json",
    "number",
    "parse_cdr",
    "pointer_from_path",
    "text",
    "timestamp",
]

_DECODER: Final = msgspec.json.Decoder(float_hook=Decimal)
_CANONICAL: Final = msgspec.json.Encoder(decimal_format="number", order="sorted")
_PATH_IN_MESSAGE: Final = re.compile(r" - at `(\$[^`]*)`$")
_PATH_PART: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")

CdrKey = tuple[str, str, str]
_KEY: Final = ("country_code", "party_id", "id")
_ZERO: Final = Decimal(0)


class RefusedPayload(ValueError):  # noqa: N818 - an outcome, not a programming error
    """A payload intake cannot take in at all: ``reason`` is "invalid"; the message says why."""

    def __init__(self, message: str, *, key: CdrKey | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


@dataclass(frozen=True, slots=True)
class WireProblem:
    """Why the CDR is not a valid OCPI 2.2.1 CDR, and where (RFC 6901 pointer)."""

    message: str
    pointer: str


@dataclass(frozen=True, slots=True)
class ParsedCdr:
    """A CDR as clearing reads it.

    ``doc`` is the JSON with ``null`` members dropped and every non-integer number a `Decimal`; ``view`` the pricing
    engine's lenient view (None when the CDR lacks what pricing needs, ``view_error`` says what); ``wire_error``
    the first violation of the strict OCPI 2.2.1 model, if any.
    """

    raw: bytes
    doc: dict[str, Any]
    key: CdrKey
    content_hash: str
    view: Cdr | None
    view_error: str | None
    wire_error: WireProblem | None

    @property
    def credit(self) -> bool:
        return self.doc.get("credit") is True

    @property
    def label(self) -> str:
        return "/".join(self.key)


def escape_pointer(token: str | int) -> str:
    """One RFC 6901 reference token."""
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer_from_path(path: str) -> str:
    """``$.charging_periods[0].dimensions`` (msgspec's error path) as ``/charging_periods/0/dimensions``."""
    if not path.startswith("$"):
        return ""
    parts: list[str] = []
    for match in _PATH_PART.finditer(path[1:]):
        name, index = match.groups()
        parts.append(escape_pointer(name if name is not None else index))
    return "".join(f"/{part}" for part in parts)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _drop_nulls(item) for name, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value


def _canonical(value: Any) -> Any:
    # Dispatch on the exact type first: this walk runs over every member of every CDR taken in (ADR 0211).
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is dict:
        return _canonical_dict(value)
    if kind is list:
        return [_canonical(item) for item in value]
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return value
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    # 1.5 == 1.50 == 15E-1 and 2 == 2.0; -0 is 0.
    return _ZERO if number == 0 else number.normalize()


def _canonical_dict(value: dict[str, Any]) -> dict[str, Any]:
    """`_canonical` of an object, with strings and Decimals (most members) handled inline: same result, about
    twice as fast, since it saves a call per member."""
    out: dict[str, Any] = {}
    for name, item in value.items():
        kind = type(item)
        if kind is str:
            out[name] = item
        elif kind is dict:
            out[name] = _canonical_dict(item)
        elif kind is Decimal:
            out[name] = _ZERO if item == 0 else item.normalize()
        elif item is not None:
            out[name] = _canonical(item)
    return out


def canonical_hash(doc: Any) -> str:
    """SHA-256 of the JSON value with sorted keys, ``null`` members dropped and numbers normalised."""
    value = _canonical_dict(doc) if type(doc) is dict else _canonical(doc)
    return hashlib.sha256(_CANONICAL.encode(value)).hexdigest()


def load_json(raw: bytes) -> Any:
    """Decode JSON with non-integer numbers as `Decimal`; raise `RefusedPayload` for anything that is not JSON."""
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise RefusedPayload(f"not JSON: {exc}") from None


def _key_part(doc: Mapping[str, Any], name: str, low: int, high: int) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not low <= len(value) <= high or not value.isascii() or not value.isprintable():
        length = f"{low}" if low == high else f"{low} to {high}"
        raise RefusedPayload(f"`{name}` must be a string of {length} printable ASCII characters, got {value!r}")
    return ci_key(value)


def _wire_problem(raw: bytes) -> WireProblem | None:
    try:
        decode(raw, ocpi.CDR)
    except WireError as exc:
        found = _PATH_IN_MESSAGE.search(exc.message)
        pointer = pointer_from_path(found.group(1)) if found else ""
        return WireProblem(exc.message, pointer)
    return None


def _key(doc: Mapping[str, Any], *, required: bool) -> CdrKey:
    try:
        return (
            _key_part(doc, "country_code", 2, 2),
            _key_part(doc, "party_id", 3, 3),
            _key_part(doc, "id", 1, 39),
        )
    except RefusedPayload:
        if required:
            raise
        return tuple(ci_key(doc[name]) if isinstance(doc.get(name), str) else "?" for name in _KEY)  # type: ignore[return-value]


def parse_cdr(raw: bytes, *, require_key: bool = True) -> ParsedCdr:
    """Read one CDR payload; raise `RefusedPayload` when it is not a JSON object with a usable key.

    With ``require_key=False`` (pre-flight) a CDR without a usable key is read all the same, its missing key parts
    shown as ``?``; the schema rule reports them.
    """
    loaded = load_json(raw)
    if not isinstance(loaded, dict):
        raise RefusedPayload(f"a CDR must be a JSON object, got {type(loaded).__name__}")
    if has_nul(raw):  # PostgreSQL cannot store U+0000 in text; no OCPI field allows it
        raise RefusedPayload(NUL_REFUSED)
    # Without the bytes "null" the payload has no null member to drop (the walk copies the whole document).
    doc: dict[str, Any] = _drop_nulls(loaded) if b"null" in raw else loaded
    key = _key(doc, required=require_key)
    view: Cdr | None = None
    view_error: str | None = None
    try:
        view = cdr_from_builtins(doc, nulls_dropped=True)
    except InputError as exc:
        view_error = str(exc)
    return ParsedCdr(
        raw=raw,
        doc=doc,
        key=key,
        content_hash=canonical_hash(doc),
        view=view,
        view_error=view_error,
        wire_error=_wire_problem(raw),
    )


def text(doc: Mapping[str, Any], *path: str) -> str | None:
    """A string found at ``path`` inside nested objects, or None."""
    value: Any = doc
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value if isinstance(value, str) else None


def key_of(doc: Mapping[str, Any], *path: str) -> str | None:
    """`ci_key` of the string at ``path``, or None."""
    value = text(doc, *path)
    return None if value is None else ci_key(value)


def number(value: Any) -> Decimal | None:
    """A JSON number as `Decimal` (ints too); None for anything else, booleans included."""
    if type(value) is Decimal:  # the common case, first: the rules ask about seventy times per CDR
        return value if value.is_finite() else None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    number_ = Decimal(value)
    return number_ if number_.is_finite() else None


def timestamp(value: Any) -> datetime | None:
    """An OCPI DateTime string as an aware UTC datetime (lenient: an offset is converted), or None."""
    if not isinstance(value, str):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        pass
    try:
        moment = msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def ci_text(value: Any) -> str | None:
    """`ci_key` of a string value, None for anything else."""
    return ci_key(value) if isinstance(value, str) else None
