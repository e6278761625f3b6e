"""Who owns a token, remembered in memory for open-routed real-time authorization (DESIGN: hot lookups in memory).

A driver waits on every ``POST tokens/{uid}/authorize`` without OCPI-to-*, and the hub must first find the eMSP that
pushed that (uid, type) (hub notes §4.8). The answer changes only when an eMSP pushes a token it did not have, so it
is kept for a short while: forgotten at once when a token with that (uid, type) is stored through this process,
and after ``ttl`` seconds otherwise (a push through another hub instance). Unknown tokens are never remembered, so a
token pushed a moment ago is found at once. What is remembered is only where to send the question; whether the token
may charge is always the eMSP's answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from hub.ocpi.types import ci_key
from routing.table import PartyKey

TTL: Final = 30.0
MAX_ENTRIES: Final = 100_000

Key = tuple[str, str]


class TokenOwners:
    def __init__(
        self, *, ttl: float = TTL, max_entries: int = MAX_ENTRIES, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._now = now
        self._entries: dict[Key, tuple[float, tuple[PartyKey, ...]]] = {}

    @staticmethod
    def key(uid: str, token_type: str) -> Key:
        return (ci_key(uid), ci_key(token_type))

    def get(self, key: Key) -> tuple[PartyKey, ...] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._now() >= entry[0]:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: Key, owners: tuple[PartyKey, ...]) -> None:
        if not owners:
            return  # unknown tokens are asked again next time
        if len(self._entries) >= self._max:
            # Oldest first (dicts keep insertion order): a bounded memory, and hot tokens come straight back.
            for stale in list(self._entries)[: self._max // 10 or 1]:
                del self._entries[stale]
        self._entries[key] = (self._now() + self._ttl, owners)

    def forget(self, uid: str, token_type: str) -> None:
        self._entries.pop(self.key(uid, token_type), None)

    def __len__(self) -> int:
        return len(self._entries)
