"""Each restriction kind of mod_tariffs "TariffRestrictions", evaluated per period in the location's local time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from clearing.pricing import PriceResult, Tariff
from tests.clearing.builders import D, comp, el, minutes, period, priced, tariff


def element_used(result: PriceResult, dimension: str = "ENERGY") -> list[int]:
    return [line.element_index for line in result.lines if line.dimension == dimension]


def one_kwh_at(start: str, t: Tariff, *, time_zone: str = "UTC") -> PriceResult:
    return priced(t, [period(start, ENERGY=1)], start[:11] + "23:59", time_zone=time_zone)


# --- start_time / end_time ----------------------------------------------------------------------------------------


def evening_tariff(start: str, end: str) -> Tariff:
    return tariff(el(comp("ENERGY", "0.50"), start_time=start, end_time=end), el(comp("ENERGY", "0.20")))


@pytest.mark.parametrize(
    ("clock", "expected"),
    [("16:59", 1), ("17:00", 0), ("19:59", 0), ("20:00", 1)],
)
def test_time_window_start_inclusive_end_exclusive(clock: str, expected: int) -> None:
    result = one_kwh_at(f"2024-01-15T{clock}", evening_tariff("17:00", "20:00"))
    assert element_used(result) == [expected]


@pytest.mark.parametrize(
    ("clock", "expected"),
    [("21:59", 1), ("22:00", 0), ("23:30", 0), ("00:00", 0), ("05:59", 0), ("06:00", 1), ("12:00", 1)],
)
def test_time_window_wraps_past_midnight(clock: str, expected: int) -> None:
    result = one_kwh_at(f"2024-01-15T{clock}", evening_tariff("22:00", "06:00"))
    assert element_used(result) == [expected]
    if expected == 0:
        assert "wrapping past midnight" in result.lines[0].reasons[0]


@pytest.mark.parametrize(("clock", "expected"), [("19:59", 1), ("20:00", 0), ("23:59", 0), ("00:00", 1)])
def test_end_time_midnight_means_end_of_day(clock: str, expected: int) -> None:
    result = one_kwh_at(f"2024-01-15T{clock}", evening_tariff("20:00", "00:00"))
    assert element_used(result) == [expected]


def test_only_start_or_only_end_time() -> None:
    from_noon = tariff(el(comp("ENERGY", "0.50"), start_time="12:00"), el(comp("ENERGY", "0.20")))
    assert element_used(one_kwh_at("2024-01-15T11:59", from_noon)) == [1]
    assert element_used(one_kwh_at("2024-01-15T23:00", from_noon)) == [0]
    until_noon = tariff(el(comp("ENERGY", "0.50"), end_time="12:00"), el(comp("ENERGY", "0.20")))
    assert element_used(one_kwh_at("2024-01-15T11:59", until_noon)) == [0]
    assert element_used(one_kwh_at("2024-01-15T12:00", until_noon)) == [1]


def test_start_time_equal_to_end_time_is_the_whole_day() -> None:
    # The spec is silent; ADR 0101 reads it as the whole day (never matching would make the dimension free).
    result = one_kwh_at("2024-01-15T03:00", evening_tariff("08:00", "08:00"))
    assert element_used(result) == [0]
    assert "START_TIME_EQUALS_END_TIME" in result.warning_codes()


def test_restrictions_use_the_location_time_zone() -> None:
    # 16:30 UTC is 17:30 in Amsterdam in winter (UTC+1) and 18:30 in summer (UTC+2): inside 17:00-20:00 local,
    # but outside it in UTC.
    t = evening_tariff("17:00", "20:00")
    assert element_used(one_kwh_at("2024-01-15T16:30", t, time_zone="Europe/Amsterdam")) == [0]
    assert element_used(one_kwh_at("2024-01-15T16:30", t, time_zone="UTC")) == [1]
    # 15:30 UTC in July is 17:30 CEST; in January it is 16:30 CET.
    assert element_used(one_kwh_at("2024-07-15T15:30", t, time_zone="Europe/Amsterdam")) == [0]
    assert element_used(one_kwh_at("2024-01-15T15:30", t, time_zone="Europe/Amsterdam")) == [1]


def test_period_crossing_dst_change_uses_local_time_at_period_start() -> None:
    # 2024-03-31 01:30 UTC is 03:30 CEST, just after the clocks jumped from 02:00 to 03:00.
    t = tariff(el(comp("ENERGY", "0.10"), start_time="03:00", end_time="04:00"), el(comp("ENERGY", "0.20")))
    result = one_kwh_at("2024-03-31T01:30", t, time_zone="Europe/Amsterdam")
    assert element_used(result) == [0]
    assert result.lines[0].reasons == ["time 03:30 in [03:00, 04:00)"]


# --- start_date / end_date ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "expected"),
    [("2024-12-31T12:00", 1), ("2025-01-01T00:00", 0), ("2025-01-31T23:59", 0), ("2025-02-01T00:00", 1)],
)
def test_date_window_start_inclusive_end_exclusive(start: str, expected: int) -> None:
    t = tariff(
        el(comp("ENERGY", "0.10"), start_date="2025-01-01", end_date="2025-02-01"),
        el(comp("ENERGY", "0.20")),
    )
    assert element_used(one_kwh_at(start, t)) == [expected]


def test_dates_are_local_dates() -> None:
    # 2024-12-31 23:30 UTC is already 2025-01-01 in Amsterdam.
    t = tariff(el(comp("ENERGY", "0.10"), start_date="2025-01-01"), el(comp("ENERGY", "0.20")))
    assert element_used(one_kwh_at("2024-12-31T23:30", t, time_zone="Europe/Amsterdam")) == [0]
    assert element_used(one_kwh_at("2024-12-31T23:30", t, time_zone="UTC")) == [1]


# --- day_of_week --------------------------------------------------------------------------------------------------


def test_day_of_week_is_the_local_weekday() -> None:
    # Sunday 2024-01-14 23:30 UTC is Monday 00:30 in Amsterdam.
    t = tariff(el(comp("ENERGY", "0.10"), day_of_week=["MONDAY"]), el(comp("ENERGY", "0.20")))
    assert element_used(one_kwh_at("2024-01-14T23:30", t, time_zone="Europe/Amsterdam")) == [0]
    assert element_used(one_kwh_at("2024-01-14T23:30", t, time_zone="UTC")) == [1]


def test_unknown_weekday_is_reported() -> None:
    t = tariff(el(comp("ENERGY", "0.10"), day_of_week=["MONDAY", "FUNDAY"]), el(comp("ENERGY", "0.20")))
    result = one_kwh_at("2024-01-15T10:00", t)
    assert element_used(result) == [0]
    assert "RESTRICTION_NOT_EVALUABLE" in result.warning_codes()


# --- min_kwh / max_kwh ----------------------------------------------------------------------------------------------


def test_kwh_restrictions_use_energy_consumed_before_the_period() -> None:
    # First 10 kWh at 0.30, from 10 kWh on at 0.20; the CPO split the period at exactly 10 kWh.
    t = tariff(
        el(comp("ENERGY", "0.30"), max_kwh=10),
        el(comp("ENERGY", "0.20"), min_kwh=10),
    )
    result = priced(
        t,
        [
            period("2024-01-15T10:00", ENERGY=6),
            period("2024-01-15T10:30", ENERGY=4),
            period("2024-01-15T10:50", ENERGY=5),
        ],
        "2024-01-15T11:30",
    )
    assert element_used(result) == [0, 0, 1]
    assert result.lines[2].reasons == ["energy so far 10 kWh >= min_kwh 10"]
    assert result.lines[1].reasons == ["energy so far 6 kWh < max_kwh 10 (exclusive)"]
    assert result.total_cost.excl_vat == D("4.00")


# --- min/max current and power --------------------------------------------------------------------------------------


def current_tariff() -> Tariff:
    return tariff(
        el(comp("TIME", "1.00"), max_current=32),
        el(comp("TIME", "2.00"), min_current=32),
        el(comp("TIME", "3.00")),
    )


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ({"MIN_CURRENT": 6, "MAX_CURRENT": 16}, 0),
        ({"MIN_CURRENT": 32, "MAX_CURRENT": 40}, 1),
        # A maximum of exactly 32 A is not below max_current 32.
        ({"MIN_CURRENT": 16, "MAX_CURRENT": 32}, 2),
    ],
)
def test_current_restrictions_use_the_period_readings(readings: dict[str, int], expected: int) -> None:
    result = priced(current_tariff(), [period("2024-01-15T10:00", dims={"TIME": 1, **readings})], "2024-01-15T11:00")
    assert element_used(result, "TIME") == [expected]
    assert "RESTRICTION_NOT_EVALUABLE" not in result.warning_codes()


def test_missing_current_reading_matches_and_is_reported() -> None:
    # No MIN_/MAX_CURRENT at all: the restriction cannot be evaluated, is treated as matching, and is reported.
    result = priced(current_tariff(), [period("2024-01-15T10:00", TIME=1)], "2024-01-15T11:00")
    assert element_used(result, "TIME") == [0]
    assert "RESTRICTION_NOT_EVALUABLE" in result.warning_codes()


def test_opposite_reading_settles_a_missing_one() -> None:
    # Only MAX_CURRENT 16 is given: the current never reached 32 A, so min_current 32 certainly fails.
    t = tariff(el(comp("TIME", "2.00"), min_current=32), el(comp("TIME", "1.00")))
    result = priced(t, [period("2024-01-15T10:00", TIME=1, MAX_CURRENT=16)], "2024-01-15T11:00")
    assert element_used(result, "TIME") == [1]
    assert result.lines[0].skipped == ["element 0: MAX_CURRENT 16 stays below min_current 32"]
    assert result.warning_codes() == []


def test_power_restrictions() -> None:
    t = tariff(
        el(comp("ENERGY", "0.20"), min_power=50), el(comp("ENERGY", "0.40"), max_power=11), el(comp("ENERGY", "0.30"))
    )
    result = priced(
        t,
        [
            period("2024-01-15T10:00", ENERGY=10, MIN_POWER=60, MAX_POWER=120),
            period("2024-01-15T10:10", ENERGY=2, MIN_POWER=3, MAX_POWER=7),
            period("2024-01-15T10:30", ENERGY=5, MIN_POWER=20, MAX_POWER=22),
        ],
        "2024-01-15T11:00",
    )
    assert element_used(result) == [0, 1, 2]


# --- min_duration / max_duration ----------------------------------------------------------------------------------


def test_duration_counts_from_session_start_including_parking() -> None:
    # Parking is free for the first 30 minutes of the *session*, then 3/h (like the grace-period vector).
    t = tariff(
        el(comp("PARKING_TIME", "0.00"), max_duration=1800),
        el(comp("PARKING_TIME", "3.00"), min_duration=1800),
        el(comp("TIME", "1.00")),
    )
    result = priced(
        t,
        [
            period("2024-01-15T10:00", TIME=minutes(20)),
            period("2024-01-15T10:20", PARKING_TIME=minutes(10)),
            period("2024-01-15T10:30", PARKING_TIME=minutes(30)),
        ],
        "2024-01-15T11:00",
    )
    assert element_used(result, "PARKING_TIME") == [0, 1]
    assert result.lines[-1].reasons == ["duration so far 1800 s >= min_duration 1800"]
    assert result.total_parking_cost.excl_vat == D("1.50")


# --- reservation ----------------------------------------------------------------------------------------------------


def test_reservation_elements_only_price_reservations() -> None:
    t = tariff(
        el(comp("TIME", "5.00"), reservation="RESERVATION"),
        el(comp("TIME", "1.00")),
    )
    result = priced(
        t,
        [period("2024-01-15T10:00", RESERVATION_TIME="0.5"), period("2024-01-15T10:30", TIME=1)],
        "2024-01-15T11:30",
    )
    assert [(line.dimension, line.element_index) for line in result.lines] == [("RESERVATION_TIME", 0), ("TIME", 1)]
    assert result.total_reservation_cost.excl_vat == D("2.50")
    assert result.total_time_cost.excl_vat == D("1.00")


def test_reservation_time_without_reservation_element_is_free_and_reported() -> None:
    t = tariff(el(comp("TIME", "1.00")))
    result = priced(
        t,
        [period("2024-01-15T10:00", RESERVATION_TIME="0.5"), period("2024-01-15T10:30", TIME=1)],
        "2024-01-15T11:30",
    )
    assert result.total_cost.excl_vat == D("1.00")
    [warning] = [w for w in result.warnings if w.code == "UNPRICED_VOLUME"]
    assert warning.period_index == 0
    assert "RESERVATION_TIME" in warning.message


# --- unknown and malformed restrictions ---------------------------------------------------------------------------


def test_unknown_restriction_is_ignored_and_reported() -> None:
    t = tariff(el(comp("ENERGY", "0.10"), min_soc=80), el(comp("ENERGY", "0.20")))
    result = one_kwh_at("2024-01-15T10:00", t)
    assert element_used(result) == [0]
    [warning] = result.warnings
    assert warning.code == "UNKNOWN_RESTRICTION"
    assert "'min_soc'" in warning.message


def test_malformed_time_is_reported() -> None:
    t = tariff(el(comp("ENERGY", "0.10"), start_time="7:00", end_time="09:00"), el(comp("ENERGY", "0.20")))
    result = one_kwh_at("2024-01-15T08:00", t)
    assert "RESTRICTION_NOT_EVALUABLE" in result.warning_codes()


def test_restrictions_are_anded() -> None:
    t = tariff(
        el(comp("ENERGY", "0.10"), start_time="08:00", end_time="12:00", day_of_week=["SATURDAY"]),
        el(comp("ENERGY", "0.20")),
    )
    # Monday inside the time window: one restriction fails, so the fallback applies.
    result = one_kwh_at("2024-01-15T09:00", t)
    assert element_used(result) == [1]
    assert result.lines[0].skipped == ["element 0: day MONDAY in day_of_week [SATURDAY] is false"]


def test_each_dimension_takes_its_own_first_matching_element() -> None:
    # Element 0 prices ENERGY and TIME but only below 10 kW; above that, ENERGY comes from element 1 and TIME from
    # element 2, even though element 1 is earlier in the list (it has no TIME component).
    t = tariff(
        el(comp("ENERGY", "0.20"), comp("TIME", "1.00"), max_power=10),
        el(comp("ENERGY", "0.30")),
        el(comp("TIME", "2.00")),
    )
    result = priced(t, [period("2024-01-15T10:00", ENERGY=22, TIME=1, MAX_POWER=22)], "2024-01-15T11:00")
    assert [(line.dimension, line.element_index) for line in result.lines] == [("ENERGY", 1), ("TIME", 2)]
    assert result.total_cost.excl_vat == Decimal("8.60")
