"""Hub URLs that stand in for partner URLs: signed page/CDR links and command result mappings (hub notes §1.6, §4.6).

A partner's ``Link`` (next page) or CDR ``Location`` points at a server the requester cannot call with its hub
token, so the hub hands out its own URL. Those are signed, self-contained tokens (no database write on the hot
path): ``base64url(json [url, target platform, requester platform, expiry, requester party, target party]) .
base64url(hmac)``. The parties let the proxied GET carry the routing headers of the original request (transport
§routing headers: every request of a functional module; a platform hosting several parties needs OCPI-to to know
whose next page is asked for).

A ``response_url`` is different: partners must store it and OCPI limits URLs to 255 characters, so it becomes a
short random id mapped in the ``command_links`` table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.platform.db import Base, UtcDateTime


@dataclass(frozen=True, slots=True)
class SignedTarget:
    url: str
    target_platform_id: int
    requester_platform_id: int
    expires: int  # unix seconds
    # (country_code, party_id) of the original request's OCPI-from and OCPI-to; None in links signed before they
    # were carried (such a link still works, without routing headers).
    requester_party: tuple[str, str] | None = None
    target_party: tuple[str, str] | None = None


class LinkSigner:
    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(b"ocpi-hub/link/v1\x00" + secret_key.encode()).digest()

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self._key, payload, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, target: SignedTarget) -> str:
        fields: list[object] = [target.url, target.target_platform_id, target.requester_platform_id, target.expires]
        if target.requester_party is not None and target.target_party is not None:
            fields += [*target.requester_party, *target.target_party]
        payload = msgspec.json.encode(fields)
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._mac(payload)

    def verify(self, token: str, *, now: datetime) -> SignedTarget | None:
        body, _, mac = token.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            return None
        if not hmac.compare_digest(self._mac(payload), mac):
            return None
        try:
            fields = msgspec.json.decode(payload, type=list[str | int])
        except msgspec.DecodeError:
            return None
        match fields:
            case [str(url), int(target), int(requester), int(expires)]:
                found = SignedTarget(url, target, requester, expires)
            case [str(url), int(target), int(requester), int(expires), str(a), str(b), str(c), str(d)]:
                found = SignedTarget(url, target, requester, expires, (a, b), (c, d))
            case _:
                return None
        return None if found.expires < int(now.timestamp()) else found


class CommandLink(Base):
    """A ``response_url`` the hub handed to a CPO in place of the requester's (mod_commands, mod_charging_profiles)."""

    __tablename__ = "command_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    module: Mapped[str] = mapped_column(String(16))
    command: Mapped[str] = mapped_column(String(32))
    requester_platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"), index=True)
    requester_country_code: Mapped[str] = mapped_column(String(2))
    requester_party_id: Mapped[str] = mapped_column(String(3))
    target_country_code: Mapped[str] = mapped_column(String(2))
    target_party_id: Mapped[str] = mapped_column(String(3))
    response_url: Mapped[str] = mapped_column(Text)
    # CANCEL_RESERVATION is open-routed by the reservation it cancels (hub notes §4.8).
    reservation_id: Mapped[str | None] = mapped_column(String(36), index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    results: Mapped[int] = mapped_column(Integer, default=0)
