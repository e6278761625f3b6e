"""The worked examples of the OCPI 2.2.1 Tariffs chapter (mod_tariffs, 2.2.1 bugfix branch), with hand-written CDRs.

Each test builds the example's tariff and the charging periods the example describes, and asserts the spec's
amounts. Where the spec prints an amount rounded to cents, the test asserts the exact amount and its rounding.
Two examples are wrong in (some versions of) the spec text; those tests assert the corrected amount and say why.
Also here: the step_size examples of mod_cdrs ("step_size") and of the PriceComponent notes.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from clearing.pricing import Tariff
from tests.clearing.builders import D, as_minutes, comp, el, minutes, period, price, priced, q4, tariff, totals

WEEKDAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def energy_025(**fields: Any) -> Tariff:
    return tariff(el(comp("ENERGY", "0.25", vat="10")), **fields)


def energy_025_start(**fields: Any) -> Tariff:
    return tariff(el(comp("FLAT", "0.50", vat="20"), comp("ENERGY", "0.25", vat="10")), **fields)


# --- simple energy, start fee, min/max price ------------------------------------------------------------------------


def test_simple_025_per_kwh() -> None:
    result = priced(energy_025(), [period("2024-01-15T10:00", ENERGY=20)], "2024-01-15T11:00")
    assert totals(result) == (D("5.00"), D("5.50"))
    assert result.total_energy_cost.excl_vat == D("5.00")
    assert result.total_energy == D(20)


def test_start_fee_is_fixed_cost() -> None:
    result = priced(energy_025_start(), [period("2024-01-15T10:00", ENERGY=20)], "2024-01-15T11:00")
    assert totals(result) == (D("5.50"), D("6.10"))
    assert (result.total_fixed_cost.excl_vat, result.total_fixed_cost.incl_vat) == (D("0.50"), D("0.60"))
    assert (result.total_energy_cost.excl_vat, result.total_energy_cost.incl_vat) == (D("5.00"), D("5.50"))


@pytest.mark.parametrize(
    ("kwh", "expected"),
    [
        ("20", (D("5.00"), D("5.50"))),
        # Below 2 kWh the cost (0.30 / 0.33 for 1.2 kWh) is lifted to the minimum price.
        ("1.2", (D("0.50"), D("0.55"))),
        ("0", (D("0.50"), D("0.55"))),
    ],
)
def test_min_price(kwh: str, expected: tuple[Decimal, Decimal]) -> None:
    result = priced(
        energy_025(min_price=price("0.50", "0.55")), [period("2024-01-15T10:00", ENERGY=kwh)], "2024-01-15T11:00"
    )
    assert totals(result) == expected
    if kwh == "1.2":
        # The dimension total keeps what was consumed; the clamp is a separate adjustment line per basis.
        assert result.total_energy_cost.excl_vat == D("0.30")
        assert [(a.limit, a.basis, a.adjustment) for a in result.limit_adjustments] == [
            ("min_price", "excl_vat", D("0.20")),
            ("min_price", "incl_vat", D("0.22")),
        ]


def test_parking_fee_and_start_fee() -> None:
    t = tariff(
        el(
            comp("FLAT", "0.50", vat="20"),
            comp("ENERGY", "0.25", vat="10"),
            comp("PARKING_TIME", "2.00", vat="20", step=900),
        )
    )
    result = priced(
        t,
        [period("2024-01-15T10:00", ENERGY=20, TIME=1), period("2024-01-15T11:00", PARKING_TIME=minutes(40))],
        "2024-01-15T11:40",
    )
    assert totals(result) == (D("7.00"), D("7.90"))
    # 40 minutes of parking are billed as 45 (step 15 min).
    assert result.total_parking_cost.excl_vat == D("1.50")
    [step] = result.step_adjustments
    assert step.dimension == "PARKING_TIME"
    assert as_minutes(step.added) == 5


@pytest.mark.parametrize(("kwh", "expected"), [("50", (D("10.00"), D("11.00"))), ("30", (D("8.00"), D("8.85")))])
def test_start_fee_with_max_price(kwh: str, expected: tuple[Decimal, Decimal]) -> None:
    t = energy_025_start(max_price=price("10", "11"), end_date_time="2019-06-30T23:59:59Z")
    result = priced(t, [period("2019-03-04T10:00", ENERGY=kwh)], "2019-03-04T12:00")
    assert totals(result) == expected
    assert result.warning_codes() == []


# --- time based ---------------------------------------------------------------------------------------------------


def test_two_euro_per_hour() -> None:
    t = tariff(el(comp("TIME", "2.00", vat="10", step=60)))
    result = priced(t, [period("2024-01-15T10:00", TIME=D("2.5"))], "2024-01-15T12:30")
    assert totals(result) == (D("5.00"), D("5.50"))
    assert result.total_time == D("2.5")


def test_three_per_hour_five_per_hour_parking() -> None:
    t = tariff(el(comp("TIME", "3.00", vat="10", step=60), comp("PARKING_TIME", "5.00", vat="20", step=300)))
    result = priced(
        t,
        [period("2024-01-15T10:00", TIME=minutes(150)), period("2024-01-15T12:30", PARKING_TIME=minutes(42))],
        "2024-01-15T13:12",
    )
    assert totals(result) == (D("11.25"), D("12.75"))
    assert result.total_time_cost.excl_vat == D("7.50")
    assert result.total_parking_cost.excl_vat == D("3.75")
    assert result.total_parking_time == D("0.7")


def test_ad_hoc_alt_text_tariff() -> None:
    t = tariff(el(comp("TIME", "1.90", vat="5.2", step=300)), type="AD_HOC_PAYMENT")
    result = priced(t, [period("2024-01-15T10:00", TIME=D("2.5"))], "2024-01-15T12:30")
    # The spec prints 4.75 / 5.00: 4.75 * 1.052 = 4.997, which it shows rounded to cents.
    assert totals(result) == (D("4.75"), D("4.997"))
    assert cents(result.total_cost.incl_vat) == D("5.00")


def test_alt_url_tariff_energy_step_100_wh() -> None:
    t = tariff(el(comp("FLAT", "0.50", vat="20"), comp("ENERGY", "0.25", vat="10", step=100)), type="PROFILE_CHEAP")
    result = priced(t, [period("2024-01-15T10:00", ENERGY="20.45")], "2024-01-15T12:00")
    # 20.45 kWh is billed as 20.5 kWh; the spec's table shows the amounts rounded to cents.
    assert result.total_energy_cost.excl_vat == D("5.125")
    assert totals(result) == (D("5.625"), D("6.2375"))
    assert (cents(result.total_cost.excl_vat), cents(result.total_cost.incl_vat)) == (D("5.63"), D("6.24"))


def complex_tariff() -> Tariff:
    return tariff(
        el(comp("FLAT", "2.50", vat="15")),
        el(comp("TIME", "1.00", vat="20", step=900), max_current=32),
        el(comp("TIME", "2.00", vat="20", step=600), min_current=32, day_of_week=WEEKDAYS),
        el(comp("TIME", "1.25", vat="20", step=600), min_current=32, day_of_week=["SATURDAY", "SUNDAY"]),
        el(
            comp("PARKING_TIME", "5.00", vat="10", step=300),
            start_time="09:00",
            end_time="18:00",
            day_of_week=WEEKDAYS,
        ),
        el(
            comp("PARKING_TIME", "6.00", vat="10", step=300),
            start_time="10:00",
            end_time="17:00",
            day_of_week=["SATURDAY"],
        ),
        type="REGULAR",
    )


def test_complex_tariff_monday() -> None:
    # Monday 09:30, 165 minutes charging at no more than 16 A, then 42 minutes parking.
    result = priced(
        complex_tariff(),
        [
            period("2024-01-15T09:30", TIME=minutes(165), MIN_CURRENT=6, MAX_CURRENT=16, ENERGY=8),
            period("2024-01-15T12:15", PARKING_TIME=minutes(42)),
        ],
        "2024-01-15T12:57",
    )
    assert totals(result) == (D("9.00"), D("10.30"))
    assert (result.total_time_cost.excl_vat, result.total_time_cost.incl_vat) == (D("2.75"), D("3.30"))
    assert (result.total_parking_cost.excl_vat, result.total_parking_cost.incl_vat) == (D("3.75"), D("4.125"))
    time_line = next(line for line in result.lines if line.dimension == "TIME")
    assert time_line.element_index == 1
    assert time_line.reasons == ["MAX_CURRENT 16 < max_current 32 (exclusive)"]
    # Charging time is not rounded: it is followed by parking, which absorbs the rounding.
    assert [s.dimension for s in result.step_adjustments] == ["PARKING_TIME"]


def test_complex_tariff_saturday_erratum() -> None:
    # Saturday 13:30, 114 minutes at 43 A or more, then 71 minutes parking. The spec text says 12.28 / 13.861,
    # pricing the charging time at 1.20/h; the tariff says 1.25/h, so 114 min cost 2.375 (incl. 2.85) and the
    # totals are 12.375 / 13.975 (clearing notes §2.4 item 12a; still wrong in 2.2.1-bugfixes and 2.3.0).
    result = priced(
        complex_tariff(),
        [
            period("2024-01-20T13:30", TIME=minutes(114), MIN_CURRENT=43, MAX_CURRENT=48),
            period("2024-01-20T15:24", PARKING_TIME=minutes(71)),
        ],
        "2024-01-20T16:35",
    )
    assert totals(result) == (D("12.375"), D("13.975"))
    assert totals(result) != (D("12.28"), D("13.861"))
    assert result.total_time_cost.excl_vat == D("2.375")
    assert result.total_parking_cost.excl_vat == D("7.50")
    time_line = next(line for line in result.lines if line.dimension == "TIME")
    assert time_line.element_index == 3
    assert time_line.skipped == [
        "element 1: MAX_CURRENT 48 < max_current 32 (exclusive) is false",
        "element 2: day SATURDAY in day_of_week [MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY] is false",
    ]


def test_free_of_charge() -> None:
    t = tariff(el(comp("FLAT", "0.00", step=0)))
    result = priced(t, [period("2024-01-15T10:00", ENERGY=30, TIME=2)], "2024-01-15T12:00")
    assert totals(result) == (D(0), D(0))
    assert [line.dimension for line in result.lines] == ["FLAT"]


# --- reservations -------------------------------------------------------------------------------------------------


def reservation_then_charging(reserved_minutes: int) -> list:  # type: ignore[type-arg]
    charging_start = f"2024-01-15T10:{reserved_minutes:02d}"
    return [
        period("2024-01-15T10:00", RESERVATION_TIME=minutes(reserved_minutes)),
        period(charging_start, ENERGY=20),
    ]


def test_reservation_five_per_hour() -> None:
    t = tariff(
        el(comp("TIME", "5.00", vat="20", step=60), reservation="RESERVATION"),
        el(comp("FLAT", "0.50", vat="20"), comp("ENERGY", "0.25", vat="10")),
    )
    result = priced(t, reservation_then_charging(15), "2024-01-15T11:15")
    assert totals(result) == (D("6.75"), D("7.60"))
    assert (result.total_reservation_cost.excl_vat, result.total_reservation_cost.incl_vat) == (D("1.25"), D("1.50"))
    assert result.total_fixed_cost.excl_vat == D("0.50")
    # The session (not the reservation) lasted one hour.
    assert result.total_time == D(1)


def test_reservation_fee_and_time() -> None:
    t = tariff(
        el(comp("FLAT", "2.00", vat="20"), comp("TIME", "5.00", vat="20", step=300), reservation="RESERVATION"),
        el(comp("FLAT", "0.50", vat="20"), comp("ENERGY", "0.25", vat="10")),
    )
    result = priced(t, reservation_then_charging(13), "2024-01-15T11:13")
    # 13 minutes of reservation are billed as 15; the reservation fee and the start fee are both charged.
    assert totals(result) == (D("8.75"), D("10.00"))
    assert (result.total_reservation_cost.excl_vat, result.total_reservation_cost.incl_vat) == (D("3.25"), D("3.90"))
    assert result.total_fixed_cost.excl_vat == D("0.50")


def expire_fee_tariff() -> Tariff:
    return tariff(
        el(comp("FLAT", "4.00", vat="20"), reservation="RESERVATION_EXPIRES"),
        el(comp("TIME", "2.00", vat="20", step=600), reservation="RESERVATION"),
        el(comp("FLAT", "0.50", vat="20"), comp("ENERGY", "0.25", vat="10")),
    )


def test_reservation_with_expire_fee_used() -> None:
    result = priced(expire_fee_tariff(), reservation_then_charging(22), "2024-01-15T11:22")
    # 22 minutes billed as 30; the expiry fee does not apply because charging followed.
    assert totals(result) == (D("6.50"), D("7.30"))
    assert result.total_reservation_cost.excl_vat == D("1.00")


def test_reservation_with_expire_fee_expired() -> None:
    result = priced(expire_fee_tariff(), [period("2024-01-15T10:00", RESERVATION_TIME=1)], "2024-01-15T11:00")
    # The full reserved hour plus the expiry fee; no start fee, as no session started.
    assert totals(result) == (D("6.00"), D("7.20"))
    assert result.total_reservation_cost.excl_vat == D("6.00")
    assert result.total_fixed_cost.excl_vat == D(0)
    assert result.total_time == D(0)


def expire_time_tariff() -> Tariff:
    return tariff(
        el(comp("TIME", "6.00", vat="20", step=600), reservation="RESERVATION_EXPIRES"),
        el(comp("TIME", "3.00", vat="20", step=600), reservation="RESERVATION"),
        el(comp("FLAT", "0.50", vat="20"), comp("ENERGY", "0.25", vat="10")),
    )


def test_reservation_with_expire_time_used() -> None:
    result = priced(expire_time_tariff(), reservation_then_charging(22), "2024-01-15T11:22")
    assert totals(result) == (D("7.00"), D("7.90"))


def test_reservation_with_expire_time_expired() -> None:
    result = priced(expire_time_tariff(), [period("2024-01-15T10:00", RESERVATION_TIME="1.5")], "2024-01-15T11:30")
    assert totals(result) == (D("9.00"), D("10.80"))


def test_expired_reservation_time_prefers_expires_element_whatever_its_position() -> None:
    # The ReservationRestrictionType note gives RESERVATION_EXPIRES priority for an expired reservation's time;
    # it holds even when the RESERVATION element is listed first.
    t = tariff(
        el(comp("TIME", "3.00", vat="20", step=600), reservation="RESERVATION"),
        el(comp("TIME", "6.00", vat="20", step=600), reservation="RESERVATION_EXPIRES"),
    )
    expired = priced(t, [period("2024-01-15T10:00", RESERVATION_TIME="1.5")], "2024-01-15T11:30")
    assert totals(expired) == (D("9.00"), D("10.80"))
    used = priced(
        t, [period("2024-01-15T10:00", RESERVATION_TIME="1.5")], "2024-01-15T11:30", reservation_expired=False
    )
    assert totals(used) == (D("4.50"), D("5.40"))


# --- restriction examples -----------------------------------------------------------------------------------------


def test_max_power_restriction_example() -> None:
    t = tariff(
        el(comp("ENERGY", "0.20", vat="20"), max_power=16),
        el(comp("ENERGY", "0.35", vat="20"), max_power=32),
        el(comp("ENERGY", "0.50", vat="20")),
        type="REGULAR",
    )
    result = priced(
        t,
        [
            period("2024-01-15T10:00", ENERGY=1, MIN_POWER=6, MAX_POWER=6),
            period("2024-01-15T10:10", ENERGY=40, MIN_POWER=48, MAX_POWER=48),
            period("2024-01-15T11:00", ENERGY="0.5", MIN_POWER=4, MAX_POWER=4),
        ],
        "2024-01-15T11:10",
    )
    assert result.total_cost.excl_vat == D("20.30")
    assert [line.excl_vat for line in result.lines] == [D("0.20"), D("20.00"), D("0.10")]
    assert [line.element_index for line in result.lines] == [0, 2, 0]


def test_max_duration_restriction_example() -> None:
    t = tariff(
        el(comp("ENERGY", "0.00", vat="20"), max_duration=1800),
        el(comp("ENERGY", "0.25", vat="20"), max_duration=3600),
        el(comp("ENERGY", "0.40", vat="20")),
        type="REGULAR",
    )
    result = priced(
        t,
        [period("2024-01-15T10:00", ENERGY=5), period("2024-01-15T10:30", ENERGY="1.2")],
        "2024-01-15T10:40",
    )
    assert result.total_cost.excl_vat == D("0.30")
    assert [line.element_index for line in result.lines] == [0, 1]


# --- step_size ----------------------------------------------------------------------------------------------------


def step_size_tariff() -> Tariff:
    # Charging 1.20/h before 17:00 (30 min steps), 2.40/h after (15 min steps); parking 1.00/h until 20:00.
    return tariff(
        el(
            comp("TIME", "1.20", step=1800),
            comp("PARKING_TIME", "1.00", step=900),
            start_time="00:00",
            end_time="17:00",
        ),
        el(
            comp("TIME", "2.40", step=900), comp("PARKING_TIME", "1.00", step=900), start_time="17:00", end_time="20:00"
        ),
        el(comp("TIME", "2.40", step=900), start_time="20:00", end_time="00:00"),
    )


def test_step_size_switching_element_1() -> None:
    # 16:55 charge 10 min, park 2 min: the 2 min of parking are billed as 15; charging time is not rounded.
    result = priced(
        step_size_tariff(),
        [
            period("2024-01-15T16:55", TIME=minutes(5)),
            period("2024-01-15T17:00", TIME=minutes(5)),
            period("2024-01-15T17:05", PARKING_TIME=minutes(2)),
        ],
        "2024-01-15T17:07",
    )
    assert result.total_cost.excl_vat == D("0.55")
    assert [q4(line.excl_vat) for line in result.lines] == [D("0.10"), D("0.20"), D("0.0333")]
    assert result.total_parking_cost.excl_vat == D("0.25")


def test_step_size_switching_element_2() -> None:
    # 16:35 charge 35 min: the total is rounded to 45 min with the last element's 15 min step, billed after 17:00.
    result = priced(
        step_size_tariff(),
        [period("2024-01-15T16:35", TIME=minutes(25)), period("2024-01-15T17:00", TIME=minutes(10))],
        "2024-01-15T17:10",
    )
    assert result.total_cost.excl_vat == D("1.30")
    [step] = result.step_adjustments
    assert (step.period_index, as_minutes(step.added), step.step_size) == (1, D(10), D(900))


def test_step_size_switching_to_free_element_erratum() -> None:
    # 19:40 charge 12 min, park 20 min; parking is free from 20:00. The 8 billable parking minutes are rounded to
    # 15 and billed in the last priced parking period (19:52-20:00): 0.48 + 0.25 = 0.73. Version 2.2.1-d2 of the
    # spec said 0.80; the bugfix branch and 2.3.0 corrected it (clearing notes §2.4 item 12b).
    result = priced(
        step_size_tariff(),
        [
            period("2024-01-15T19:40", TIME=minutes(12)),
            period("2024-01-15T19:52", PARKING_TIME=minutes(8)),
            period("2024-01-15T20:00", PARKING_TIME=minutes(12)),
        ],
        "2024-01-15T20:12",
    )
    assert result.total_cost.excl_vat == D("0.73")
    assert result.total_cost.excl_vat != D("0.80")
    [step] = result.step_adjustments
    assert (step.dimension, step.period_index, as_minutes(step.added)) == ("PARKING_TIME", 1, D(7))
    assert "UNPRICED_VOLUME" in result.warning_codes()


@pytest.mark.parametrize(
    ("step", "expected"),
    [(1, D("0.029")), (25, D("0.03125")), (500, D("0.125"))],
)
def test_energy_step_size_note(step: int, expected: Decimal) -> None:
    # 115.2 Wh at 0.25/kWh: billed as 116 Wh (step 1), 125 Wh (step 25) or 500 Wh (step 500).
    t = tariff(el(comp("ENERGY", "0.25", step=step)))
    result = priced(t, [period("2024-01-15T10:00", ENERGY="0.1152")], "2024-01-15T10:05", places=None)
    assert result.total_cost.excl_vat == expected


@pytest.mark.parametrize(("kind", "used", "billed"), [("PARKING_TIME", 8, 10), ("TIME", 6, 10)])
def test_time_step_size_note(kind: str, used: int, billed: int) -> None:
    # step_size 300 bills time in 5 minute blocks: 8 (or 6) minutes are billed as 10.
    t = tariff(el(comp(kind, "6.00", step=300)))
    result = priced(t, [period("2024-01-15T10:00", dims={kind: minutes(used)})], "2024-01-15T10:30")
    assert result.total_cost.excl_vat == q4(minutes(billed) * 6)


# mod_cdrs "step_size" examples.


def test_cdrs_energy_step_rounds_session_total() -> None:
    # 4.3 kWh before 17:00 and 1.1 kWh after, both 500 Wh steps: 5.4 kWh total billed as 5.5, not 4.3 + 1.5.
    t = tariff(
        el(comp("ENERGY", "0.20", step=500), end_time="17:00"),
        el(comp("ENERGY", "0.27", step=500), start_time="17:00"),
    )
    result = priced(
        t, [period("2024-01-15T16:30", ENERGY="4.3"), period("2024-01-15T17:00", ENERGY="1.1")], "2024-01-15T17:30"
    )
    assert result.total_cost.excl_vat == D("4.3") * D("0.20") + D("1.2") * D("0.27")


def test_cdrs_time_step_rounds_session_total() -> None:
    # 6 min before 17:00 at 5/h and 22 min after at 7/h, 10 min steps: 30 min total, so 24 min after 17:00.
    t = tariff(
        el(comp("TIME", "5", step=600), end_time="17:00"),
        el(comp("TIME", "7", step=600), start_time="17:00"),
    )
    result = priced(
        t,
        [period("2024-01-15T16:54", TIME=minutes(6)), period("2024-01-15T17:00", TIME=minutes(22))],
        "2024-01-15T17:22",
    )
    assert result.total_cost.excl_vat == D("3.30")


@pytest.mark.parametrize(("step", "charging", "parking", "billed_parking"), [(600, 21, 16, 20), (300, 21, 7, 10)])
def test_cdrs_parking_absorbs_time_rounding(step: int, charging: int, parking: int, billed_parking: int) -> None:
    t = tariff(el(comp("TIME", "1.00", step=step), comp("PARKING_TIME", "2.00", step=step)))
    result = priced(
        t,
        [
            period("2024-01-15T10:00", TIME=minutes(charging)),
            period(f"2024-01-15T10:{charging:02d}", PARKING_TIME=minutes(parking)),
        ],
        "2024-01-15T11:00",
    )
    assert result.total_time_cost.excl_vat == q4(minutes(charging))  # not rounded
    assert result.total_parking_cost.excl_vat == q4(minutes(billed_parking) * 2)
