"""Wire-level helpers of the test peer: Authorization header, timestamps, envelopes and ids.

Written against the OCPI 2.2.1 text only (transport_and_format.asciidoc), never against the hub's
own wire model, so that a mistake shared by both cannot hide itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

TokenForm = Literal["base64", "raw"]

# transport_and_format §"Authorization header": the literal "Token", one space, then the encoded token.
AUTH_SCHEME = "Token"

# credentials.asciidoc, Credentials object: token is string(64) of printable non-whitespace ASCII.
MAX_TOKEN_LENGTH = 64


def new_token() -> str:
    """A fresh credentials token.

    ``token_urlsafe(32)`` yields 43 characters from ``[A-Za-z0-9_-]``: inside U+0021..U+007E and under the
    64-character limit. Its length is not a multiple of 4, so it is never valid padded Base64 either,
    which keeps our own tokens unambiguous when an inbound header is tried in both forms.
    """
    return secrets.token_urlsafe(32)


def new_id() -> str:
    """A value for X-Request-ID / X-Correlation-ID (transport_and_format §"Unique message IDs" advises UUIDs)."""
    return str(uuid.uuid4())


def encode_authorization(token: str, form: TokenForm) -> str:
    """The Authorization header value for ``token``.

    2.2.1 requires UTF-8 then Base64 per RFC 4648 §4 (standard alphabet, with padding, no newline);
    many 2.1.1/2.2 implementations send the token raw, hence the ``raw`` form.
    """
    if form == "base64":
        return f"{AUTH_SCHEME} {base64.b64encode(token.encode('utf-8')).decode('ascii')}"
    return f"{AUTH_SCHEME} {token}"


def authorization_candidates(header: str | None) -> list[tuple[str, TokenForm]]:
    """Possible tokens carried by an inbound Authorization header, Base64 reading first.

    The spec's compatibility note says a receiver has to cope with both forms, so we try the decoded
    value and the raw value; the caller keeps the first that matches a known token.
    """
    if not header:
        return []
    scheme, _, value = header.partition(" ")
    if scheme.lower() != AUTH_SCHEME.lower() or not value:
        return []
    candidates: list[tuple[str, TokenForm]] = []
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        pass
    else:
        candidates.append((decoded, "base64"))
    candidates.append((value, "raw"))
    return candidates


def is_valid_token(value: object) -> bool:
    """Whether ``value`` may be used as a credentials token (credentials.asciidoc, Credentials object)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and all("\u0021" <= ch <= "\u007e" for ch in value)
    )


def utc_timestamp(moment: datetime | None = None) -> str:
    """An OCPI DateTime: UTC, ``Z`` designator, millisecond precision (types.asciidoc, DateTime; ≤ 25 chars)."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime | None:
    """Read an OCPI DateTime; a value without designator is UTC (types.asciidoc, DateTime)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def envelope(status_code: int, data: Any = None, message: str | None = None) -> dict[str, Any]:
    """The response envelope every OCPI answer carries (transport_and_format §"Response format").

    ``data`` is left out when there is none: where the spec does not define ``data`` the sender should
    omit it (hub notes §1.3).
    """
    body: dict[str, Any] = {"status_code": status_code, "timestamp": utc_timestamp()}
    if data is not None:
        body["data"] = data
    if message is not None:
        body["status_message"] = message
    return body


def dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_json(raw: bytes) -> Any:
    """Parse a JSON body; raises ``ValueError`` (json.JSONDecodeError or UnicodeDecodeError) when invalid."""
    return json.loads(raw.decode("utf-8"))


def is_success(status_code: object) -> bool:
    """1xxx are success codes (status_codes.asciidoc; 1900-1999 are custom successes)."""
    return isinstance(status_code, int) and not isinstance(status_code, bool) and 1000 <= status_code < 2000
