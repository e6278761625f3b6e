"""Rules on the CDR's times (clearing notes §1.6 TIME-ORDER, TIME-TOTAL, TIME-EPOCH; mod_cdrs §10.3.1, §10.4.6)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

from clearing.document import number, timestamp
from clearing.facts import Facts
from clearing.rules.base import Issue, Severity, dimensions, pointer, rule

# Clocks of CPO back ends and of the hub differ; a timestamp this far ahead of the hub is in the future.
CLOCK_SKEW: Final = timedelta(minutes=5)
# Nothing was charged under OCPI before this; earlier timestamps are placeholders such as 1970-01-01.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
# OCPI volumes carry 4 decimals: half a unit of the last place per rounded number, doubled for safety.
HOUR_PRECISION: Final = Decimal("0.0001")
_SECONDS_PER_HOUR: Final = Decimal(3600)


def hours(delta: timedelta) -> Decimal:
    return (Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 1_000_000) / _SECONDS_PER_HOUR


def _periods(facts: Facts) -> list[tuple[int, datetime]]:
    periods = facts.doc.get("charging_periods")
    found: list[tuple[int, datetime]] = []
    if isinstance(periods, list):
        for index, period in enumerate(periods):
            start = timestamp(period.get("start_date_time")) if isinstance(period, dict) else None
            if start is not None:
                found.append((index, start))
    return found


@rule("CDR010", Severity.ERROR, "session ends before it starts", catalogue="TIME-ORDER")
def end_before_start(facts: Facts) -> Iterator[Issue]:
    view = facts.cdr.view
    if view is not None and view.end_date_time < view.start_date_time:
        yield Issue(
            f"end_date_time {view.end_date_time.isoformat()} is before start_date_time "
            f"{view.start_date_time.isoformat()}",
            "/end_date_time",
        )


@rule("CDR011", Severity.ERROR, "charging periods out of order or outside the session", catalogue="TIME-ORDER")
def periods_in_session(facts: Facts) -> Iterator[Issue]:
    view = facts.cdr.view
    previous: datetime | None = None
    for index, start in _periods(facts):
        where = pointer("charging_periods", index, "start_date_time")
        if view is not None and start < view.start_date_time:
            yield Issue(f"charging period {index} starts before the session ({start.isoformat()})", where)
        elif view is not None and start > view.end_date_time:
            yield Issue(f"charging period {index} starts after the session ended ({start.isoformat()})", where)
        if previous is not None and start < previous:
            # mod_cdrs §10.4.6: a period lasts until the next one starts, so only time order makes sense.
            yield Issue(f"charging period {index} starts before the period preceding it", where)
        previous = start


@rule("CDR012", Severity.ERROR, "timestamp in the future", catalogue="TIME-ORDER")
def in_the_future(facts: Facts) -> Iterator[Issue]:
    limit = facts.now + CLOCK_SKEW
    for name in ("start_date_time", "end_date_time", "last_updated"):
        moment = timestamp(facts.doc.get(name))
        if moment is not None and moment > limit:
            yield Issue(f"{name} {moment.isoformat()} is in the future (hub time {facts.now.isoformat()})", f"/{name}")


@rule("CDR013", Severity.ERROR, "placeholder timestamp", catalogue="TIME-EPOCH")
def placeholder_time(facts: Facts) -> Iterator[Issue]:
    for name in ("start_date_time", "end_date_time"):
        moment = timestamp(facts.doc.get(name))
        if moment is not None and moment < EARLIEST:
            yield Issue(
                f"{name} {moment.isoformat()} is a placeholder, not a charging time (only acceptable if agreed)",
                f"/{name}",
            )


@rule("CDR014", Severity.WARNING, "total_time differs from the session duration", catalogue="TIME-TOTAL")
def total_time_matches_duration(facts: Facts) -> Iterator[Issue]:
    view = facts.cdr.view
    total = number(facts.doc.get("total_time"))
    if view is None or total is None or view.end_date_time < view.start_date_time:
        return
    duration = hours(view.end_date_time - view.start_date_time)
    if abs(duration.quantize(HOUR_PRECISION) - total) > HOUR_PRECISION:
        yield Issue(
            f"total_time is {total} h but the session lasts {duration.quantize(HOUR_PRECISION)} h "
            "(end_date_time - start_date_time, mod_cdrs §10.3.1)",
            "/total_time",
        )


@rule("CDR015", Severity.WARNING, "total_time inconsistent with the charging periods", catalogue="TIME-TOTAL")
def total_time_matches_periods(facts: Facts) -> Iterator[Issue]:
    view = facts.cdr.view
    per_period: dict[int, Decimal] = {}
    for period_index, _, kind, volume in dimensions(facts.doc):
        if kind in ("TIME", "PARKING_TIME"):
            per_period[period_index] = per_period.get(period_index, Decimal(0)) + volume
    if not per_period:
        return
    starts = _periods(facts)
    for position, (index, start) in enumerate(starts):
        if index not in per_period:
            continue
        end = starts[position + 1][1] if position + 1 < len(starts) else (view.end_date_time if view else None)
        if end is None or end < start:
            continue
        length = hours(end - start)
        if per_period[index] > length + 2 * HOUR_PRECISION:
            yield Issue(
                f"charging period {index} reports {per_period[index]} h of TIME and PARKING_TIME but lasts only "
                f"{length.quantize(HOUR_PRECISION)} h",
                pointer("charging_periods", index, "dimensions"),
            )
    total = number(facts.doc.get("total_time"))
    if total is None:
        return
    summed = sum(per_period.values(), Decimal(0))
    allowed = max(Decimal("0.001"), HOUR_PRECISION * (len(per_period) + 1))
    if abs(summed - total) > allowed:
        yield Issue(
            f"total_time is {total} h but the charging periods add up to {summed} h of TIME and PARKING_TIME",
            "/total_time",
        )


@rule("CDR016", Severity.WARNING, "parking time longer than the session", catalogue="TIME-TOTAL")
def parking_within_total(facts: Facts) -> Iterator[Issue]:
    total = number(facts.doc.get("total_time"))
    parking = number(facts.doc.get("total_parking_time"))
    if total is not None and parking is not None and parking > total + HOUR_PRECISION:
        yield Issue(
            f"total_parking_time {parking} h exceeds total_time {total} h (mod_cdrs §10.3.1)", "/total_parking_time"
        )


@rule("CDR017", Severity.WARNING, "total_parking_time differs from the PARKING_TIME volumes", catalogue="TIME-TOTAL")
def parking_matches_periods(facts: Facts) -> Iterator[Issue]:
    volumes = [volume for _, _, kind, volume in dimensions(facts.doc) if kind == "PARKING_TIME"]
    stated = number(facts.doc.get("total_parking_time"))
    if not volumes and stated is None:
        return
    summed = sum(volumes, Decimal(0))
    total = stated if stated is not None else Decimal(0)
    allowed = max(Decimal("0.001"), HOUR_PRECISION * (len(volumes) + 1))
    if abs(summed - total) > allowed:
        yield Issue(
            f"total_parking_time is {total} h but the PARKING_TIME volumes add up to {summed} h",
            "/total_parking_time",
        )
