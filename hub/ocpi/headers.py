"""OCPI HTTP header names and the credentials-token ``Authorization`` header (transport §4.1.2).

HTTP header names are case-insensitive; each name comes in the spec's spelling and in the
lower-case form that ASGI servers and most HTTP clients hand out.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final, Literal

__all__ = [
    "AUTHORIZATION",
    "AUTHORIZATION_LC",
    "LINK",
    "LINK_LC",
    "OCPI_FROM_COUNTRY_CODE",
    "OCPI_FROM_COUNTRY_CODE_LC",
    "OCPI_FROM_PARTY_ID",
    "OCPI_FROM_PARTY_ID_LC",
    "OCPI_TO_COUNTRY_CODE",
    "OCPI_TO_COUNTRY_CODE_LC",
    "OCPI_TO_PARTY_ID",
    "OCPI_TO_PARTY_ID_LC",
    "X_CORRELATION_ID",
    "X_CORRELATION_ID_LC",
    "X_LIMIT",
    "X_LIMIT_LC",
    "X_REQUEST_ID",
    "X_REQUEST_ID_LC",
    "X_TOTAL_COUNT",
    "X_TOTAL_COUNT_LC",
    "TokenForm",
    "encode_token",
    "is_valid_token",
    "parse_authorization",
]

# Authentication (transport §4.1.2).
AUTHORIZATION: Final = "Authorization"
# Unique message ids (transport §4.2).
X_REQUEST_ID: Final = "X-Request-ID"
X_CORRELATION_ID: Final = "X-Correlation-ID"
# Message routing headers (transport §4.1.8.2).
OCPI_FROM_COUNTRY_CODE: Final = "OCPI-from-country-code"
OCPI_FROM_PARTY_ID: Final = "OCPI-from-party-id"
OCPI_TO_COUNTRY_CODE: Final = "OCPI-to-country-code"
OCPI_TO_PARTY_ID: Final = "OCPI-to-party-id"
# Pagination headers (transport §4.1.4.1 GET, paginated responses).
LINK: Final = "Link"
X_TOTAL_COUNT: Final = "X-Total-Count"
X_LIMIT: Final = "X-Limit"

AUTHORIZATION_LC: Final = "authorization"
X_REQUEST_ID_LC: Final = "x-request-id"
X_CORRELATION_ID_LC: Final = "x-correlation-id"
OCPI_FROM_COUNTRY_CODE_LC: Final = "ocpi-from-country-code"
OCPI_FROM_PARTY_ID_LC: Final = "ocpi-from-party-id"
OCPI_TO_COUNTRY_CODE_LC: Final = "ocpi-to-country-code"
OCPI_TO_PARTY_ID_LC: Final = "ocpi-to-party-id"
LINK_LC: Final = "link"
X_TOTAL_COUNT_LC: Final = "x-total-count"
X_LIMIT_LC: Final = "x-limit"

#: How a credentials token is written after ``Token ``: Base64 as 2.2.1 requires, or raw as many
#: 2.1.1/2.2 implementations do (transport §4.1.2 note).
TokenForm = Literal["base64", "raw"]

_SCHEME: Final = "token"
# Credentials tokens hold printable non-whitespace ASCII only, U+0021..U+007E (credentials §7.3.1).
_TOKEN_RE: Final = re.compile(r"[\x21-\x7e]{1,64}")


def is_valid_token(token: str) -> bool:
    """Whether ``token`` is a well-formed credentials token (credentials §7.3.1: string(64), U+0021..U+007E)."""
    return _TOKEN_RE.fullmatch(token) is not None


def encode_token(token: str, form: TokenForm = "base64") -> str:
    """Return the ``Authorization`` header value for ``token``.

    ``base64``: UTF-8 then RFC 4648 §4 Base64 (standard alphabet, padded, no newline), as
    transport §4.1.2 requires. ``raw``: the token as is, for partners that never encode it.
    """
    if form == "base64":
        return "Token " + base64.b64encode(token.encode("utf-8")).decode("ascii")
    if form == "raw":
        return "Token " + token
    raise ValueError(f"Unknown token form {form!r}")


def parse_authorization(value: str | None) -> list[tuple[str, TokenForm]]:
    """Return the candidate credentials tokens in an ``Authorization`` header, best guess first.

    The Base64-decoded candidate comes first, but only if the text is strict Base64 and decodes to a
    well-formed token; the raw text follows (transport §4.1.2 note: whether a partner encodes is
    only known by trial or configuration). A value that decodes to the token plus a trailing
    newline, like the spec's own examples (hub notes §1.1), yields only the raw candidate: a
    newline can never be part of a token. An absent or non-``Token`` header yields no candidate.
    """
    if not value:
        return []
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != _SCHEME:
        return []
    encoded = rest.strip()
    candidates: list[tuple[str, TokenForm]] = []
    try:
        decoded = base64.b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError):
        decoded = None
    if decoded is not None and is_valid_token(decoded):
        candidates.append((decoded, "base64"))
    if is_valid_token(encoded) and encoded != decoded:
        candidates.append((encoded, "raw"))
    return candidates
