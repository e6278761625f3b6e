"""The injected clock: production uses the wall clock, tests pass one they control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def iso_utc(value: datetime | None) -> str | None:
    """A stored UTC timestamp as operators' JSON shows it (``…Z``, full precision); None stays None."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")
