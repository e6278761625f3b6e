"""Enums shared by several OCPI 2.2.1 modules, kept here to avoid import cycles between modules.

`TokenType` belongs to the Tokens chapter (mod_tokens §12.4.4) and is used by Locations, CDRs and
Sessions; `ProfileType` belongs to the Sessions chapter (mod_sessions §9.4.2) and is used by Tokens.
Tokens → Sessions → CDRs → Tokens would otherwise be a cycle. Both are re-exported by their home
modules (`tokens`, `sessions`).

Enum choices: `TokenType` is a strict `StrEnum` (the hub authorises tokens per type);
`ProfileType` names the known values of an open string field the hub only relays.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ProfileType", "TokenType"]


class TokenType(StrEnum):
    """Kind of token used to authorise charging (mod_tokens §12.4.4)."""

    AD_HOC_USER = "AD_HOC_USER"
    APP_USER = "APP_USER"
    OTHER = "OTHER"
    RFID = "RFID"


class ProfileType(StrEnum):
    """Smart charging preference chosen by the driver (mod_sessions §9.4.2)."""

    CHEAP = "CHEAP"
    FAST = "FAST"
    GREEN = "GREEN"
    REGULAR = "REGULAR"
