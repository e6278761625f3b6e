"""Evaluation of TariffRestrictions against the situation at one moment of a session.

OCPI 2.2.1 (mod_tariffs "TariffRestrictions class") says restrictions switch an element on or off *during* a
session; they never qualify the session as a whole. The engine therefore evaluates them per charging period, at the
period's start (ADR 0101, decision 2), with:

* times, dates and weekdays in the local time of the location (the Location's ``time_zone``);
* energy and duration as consumed so far in the session, before the period starts;
* current and power from the period's own MIN_/MAX_CURRENT and MIN_/MAX_POWER dimensions (they are instantaneous).

Every set restriction must hold (logical AND). Besides the yes/no answer, the verdict explains in words which
restrictions held or failed, and reports restrictions it could not evaluate (those are treated as matching).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Final

from clearing.pricing.inputs import TariffRestrictions

__all__ = ["Issue", "ReservationState", "Situation", "Verdict", "evaluate", "number"]

_DAYS: Final = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
# mod_tariffs: 24h format with leading zeros, "HH:MM".
_TIME: Final = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_MIDNIGHT: Final = time(0, 0)


class ReservationState(StrEnum):
    """Which kind of volume is being priced (mod_tariffs "ReservationRestrictionType")."""

    NONE = "NONE"  # charging or parking: only elements without a `reservation` restriction apply
    ACTIVE = "RESERVATION"  # a reservation that was followed by a charging session
    EXPIRED = "RESERVATION_EXPIRES"  # a reservation that lapsed without a charging session


@dataclass(frozen=True, slots=True)
class Situation:
    """The facts restrictions are evaluated against."""

    local: datetime  # wall-clock time at the location
    duration_s: Decimal  # seconds since the session (or reservation) started
    energy_kwh: Decimal  # energy consumed in the session so far
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    reservation: ReservationState = ReservationState.NONE


@dataclass(frozen=True, slots=True)
class Issue:
    """A restriction that could not be evaluated as written."""

    code: str
    message: str


@dataclass(slots=True)
class Verdict:
    """Whether an element's restrictions all hold, and why."""

    matched: bool = True
    held: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def check(self, ok: bool, text: str, failure: str | None = None) -> None:
        """Record one restriction: ``text`` states the condition, ``failure`` (if given) words its failure."""
        if ok:
            self.held.append(text)
        else:
            self.matched = False
            self.failed.append(failure or f"{text} is false")


def number(value: Decimal) -> str:
    """Render a Decimal without exponent or trailing zeros, for explanations."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


@functools.lru_cache(maxsize=1024)
def _hh_mm(value: str) -> time | None:
    # A tariff's few time strings are read for every element choice of every CDR: parse each once.
    match = _TIME.match(value.strip())
    return None if match is None else time(int(match.group(1)), int(match.group(2)))


def _parse_time(value: str, name: str, verdict: Verdict) -> time | None:
    parsed = _hh_mm(value)
    if parsed is None:
        verdict.issues.append(
            Issue("RESTRICTION_NOT_EVALUABLE", f"{name} {value!r} is not HH:MM; the restriction is ignored")
        )
        return None
    return parsed


def _parse_date(value: str, name: str, verdict: Verdict) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        verdict.issues.append(
            Issue("RESTRICTION_NOT_EVALUABLE", f"{name} {value!r} is not YYYY-MM-DD; the restriction is ignored")
        )
        return None


def _time_window(restrictions: TariffRestrictions, now: time, verdict: Verdict) -> None:
    start = _parse_time(restrictions.start_time, "start_time", verdict) if restrictions.start_time else None
    end = _parse_time(restrictions.end_time, "end_time", verdict) if restrictions.end_time else None
    shown = f"{now.hour:02d}:{now.minute:02d}" + (f":{now.second:02d}" if now.second or now.microsecond else "")
    if start is not None and end is not None:
        if start == end:
            # The spec is silent; "the whole day" is the fail-safe reading (ADR 0101, decision 4).
            verdict.issues.append(
                Issue(
                    "START_TIME_EQUALS_END_TIME",
                    f"start_time = end_time = {restrictions.start_time}; read as the whole day",
                )
            )
            verdict.check(True, f"time {shown} (start_time = end_time: whole day)")
        elif start < end:
            verdict.check(start <= now < end, f"time {shown} in [{restrictions.start_time}, {restrictions.end_time})")
        else:
            # end_time < start_time wraps past midnight; end_time 00:00 means "until the end of the day".
            verdict.check(
                now >= start or now < end,
                f"time {shown} in [{restrictions.start_time}, {restrictions.end_time}) wrapping past midnight",
            )
    elif start is not None:
        verdict.check(now >= start, f"time {shown} >= start_time {restrictions.start_time}")
    elif end is not None:
        verdict.check(end == _MIDNIGHT or now < end, f"time {shown} < end_time {restrictions.end_time}")


def _date_window(restrictions: TariffRestrictions, today: date, verdict: Verdict) -> None:
    if restrictions.start_date:
        start = _parse_date(restrictions.start_date, "start_date", verdict)
        if start is not None:
            verdict.check(today >= start, f"date {today} >= start_date {start}")
    if restrictions.end_date:
        end = _parse_date(restrictions.end_date, "end_date", verdict)
        if end is not None:
            verdict.check(today < end, f"date {today} < end_date {end} (exclusive)")


def _bounds(
    verdict: Verdict, *, what: str, unit: str, value: Decimal, low: Decimal | None, high: Decimal | None, names: str
) -> None:
    low_name, high_name = names.split("/")
    if low is not None:
        verdict.check(value >= low, f"{what} {number(value)}{unit} >= {low_name} {number(low)}")
    if high is not None:
        verdict.check(value < high, f"{what} {number(value)}{unit} < {high_name} {number(high)} (exclusive)")


def _instantaneous(
    verdict: Verdict,
    *,
    quantity: str,
    low: Decimal | None,
    high: Decimal | None,
    seen_min: Decimal | None,
    seen_max: Decimal | None,
) -> None:
    """min_<quantity> needs the period's minimum to reach it; max_<quantity> needs the period's maximum below it.

    A CPO must start a new period whenever such a threshold is crossed (mod_cdrs "ChargingPeriod"), so within a
    period the quantity is on one side of every threshold. When the dimension that answers the question is missing,
    the opposite one is used if it settles the question; otherwise the restriction is treated as matching and
    reported (ADR 0101, decision 3).
    """
    upper = quantity.upper()
    if low is not None:
        name = f"min_{quantity} {number(low)}"
        if seen_min is not None:
            verdict.check(seen_min >= low, f"MIN_{upper} {number(seen_min)} >= {name}")
        elif seen_max is not None and seen_max < low:
            verdict.check(False, name, f"MAX_{upper} {number(seen_max)} stays below {name}")
        else:
            verdict.issues.append(
                Issue("RESTRICTION_NOT_EVALUABLE", f"{name}: the period has no MIN_{upper}; treated as matching")
            )
            verdict.check(True, f"{name} (not evaluable: no MIN_{upper})")
    if high is not None:
        name = f"max_{quantity} {number(high)}"
        if seen_max is not None:
            verdict.check(seen_max < high, f"MAX_{upper} {number(seen_max)} < {name} (exclusive)")
        elif seen_min is not None and seen_min >= high:
            verdict.check(False, name, f"MIN_{upper} {number(seen_min)} is not below {name}")
        else:
            verdict.issues.append(
                Issue("RESTRICTION_NOT_EVALUABLE", f"{name}: the period has no MAX_{upper}; treated as matching")
            )
            verdict.check(True, f"{name} (not evaluable: no MAX_{upper})")


def _day_of_week(days: list[str], today: datetime, verdict: Verdict) -> None:
    unknown = [day for day in days if day not in _DAYS]
    if unknown:
        verdict.issues.append(Issue("RESTRICTION_NOT_EVALUABLE", f"day_of_week has unknown values {unknown}"))
    known = [day for day in days if day in _DAYS]
    if not known:
        return
    weekday = _DAYS[today.weekday()]
    verdict.check(weekday in known, f"day {weekday} in day_of_week [{', '.join(known)}]")


def _reservation(kind: str | None, state: ReservationState, verdict: Verdict) -> None:
    # An element with a `reservation` restriction prices reservations only; one without prices the session only.
    if kind is None:
        if state is not ReservationState.NONE:
            verdict.check(False, "", "no reservation restriction, so the element does not price a reservation")
        return
    if kind == ReservationState.ACTIVE:
        verdict.check(
            state is not ReservationState.NONE,
            f"reservation {kind}: a reservation is priced",
            f"reservation {kind}: the volume is not a reservation",
        )
    elif kind == ReservationState.EXPIRED:
        verdict.check(
            state is ReservationState.EXPIRED,
            f"reservation {kind}: the reservation expired unused",
            f"reservation {kind}: no expired reservation is priced",
        )
    else:
        verdict.issues.append(Issue("UNKNOWN_RESTRICTION", f"reservation {kind!r} is unknown; element never applies"))
        verdict.check(False, "", f"reservation {kind!r} is unknown")


def evaluate(restrictions: TariffRestrictions | None, situation: Situation) -> Verdict:
    """Evaluate every restriction of one element; the element applies when ``matched``."""
    verdict = Verdict()
    if restrictions is None:
        _reservation(None, situation.reservation, verdict)
        if verdict.matched:
            verdict.held.append("no restrictions")
        return verdict
    for key in restrictions.unknown_keys:
        # Unknown (future or misspelled) restrictions cannot be evaluated; ignoring them is reported, not silent.
        verdict.issues.append(Issue("UNKNOWN_RESTRICTION", f"restriction {key!r} is unknown and was ignored"))
    _time_window(restrictions, situation.local.time(), verdict)
    _date_window(restrictions, situation.local.date(), verdict)
    _bounds(
        verdict,
        what="energy so far",
        unit=" kWh",
        value=situation.energy_kwh,
        low=restrictions.min_kwh,
        high=restrictions.max_kwh,
        names="min_kwh/max_kwh",
    )
    _instantaneous(
        verdict,
        quantity="current",
        low=restrictions.min_current,
        high=restrictions.max_current,
        seen_min=situation.min_current,
        seen_max=situation.max_current,
    )
    _instantaneous(
        verdict,
        quantity="power",
        low=restrictions.min_power,
        high=restrictions.max_power,
        seen_min=situation.min_power,
        seen_max=situation.max_power,
    )
    _bounds(
        verdict,
        what="duration so far",
        unit=" s",
        value=situation.duration_s,
        low=restrictions.min_duration,
        high=restrictions.max_duration,
        names="min_duration/max_duration",
    )
    if restrictions.day_of_week:
        _day_of_week(restrictions.day_of_week, situation.local, verdict)
    _reservation(restrictions.reservation, situation.reservation, verdict)
    if verdict.matched and not verdict.held:
        verdict.held.append("no restrictions")
    return verdict
