"""Dashboard sessions: an HMAC-signed cookie naming the operator key, with an expiry, and CSRF tokens bound to it.

The cookie holds ``<key id>.<expires>.<nonce>.<mac>``: no key, nothing secret, and it cannot be forged or extended
without ``HUB_SECRET_KEY`` (the MAC key is derived from it for this one purpose). Every request looks the key up by
id, so revoking the key ends its sessions at once; logging out clears the cookie. The cookie is HttpOnly and
SameSite=Strict (Secure when the hub is served over HTTPS). A form's CSRF token is an HMAC of the session cookie, so
it changes with every login and needs no server-side storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

COOKIE: Final = "hub_ui_session"
COOKIE_PATH: Final = "/ui"
LIFETIME: Final = timedelta(hours=8)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SessionClaim:
    key_id: int
    expires: datetime
    value: str  # the cookie value, to bind the CSRF token to


class SessionSigner:
    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to sign dashboard sessions")
        self._key = hashlib.sha256(b"ocpi-hub/ui-session/v1\x00" + secret_key.encode()).digest()

    def _mac(self, label: bytes, payload: str) -> str:
        return _b64(hmac.new(self._key, label + b"\x00" + payload.encode(), hashlib.sha256).digest())

    def issue(self, key_id: int, now: datetime) -> str:
        expires = int((now + LIFETIME).timestamp())
        payload = f"{key_id}.{expires}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._mac(b'session', payload)}"

    def verify(self, value: str, now: datetime) -> SessionClaim | None:
        """The claim of a cookie that is well formed, signed by us and not expired; None for anything else."""
        payload, _, mac = value.rpartition(".")
        if not payload or not hmac.compare_digest(self._mac(b"session", payload), mac):
            return None
        key_id, _, rest = payload.partition(".")
        expires, _, _nonce = rest.partition(".")
        if not (key_id.isdigit() and expires.isdigit()):
            return None
        if int(expires) <= now.timestamp():
            return None
        return SessionClaim(int(key_id), datetime.fromtimestamp(int(expires), tz=now.tzinfo), value)

    def csrf_token(self, claim: SessionClaim) -> str:
        return self._mac(b"csrf", claim.value)

    def csrf_ok(self, claim: SessionClaim, token: str) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(claim), token)
