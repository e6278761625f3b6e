"""Engine behaviour beyond single restrictions: FLAT, VAT, limits, step rounding, tariff choice, time zones,
warnings and the explanation it returns."""

from __future__ import annotations

from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

import pytest

from clearing.pricing import PricingError, cdr_from_builtins, price_cdr, price_session
from tests.clearing.builders import D, as_minutes, at, comp, el, minutes, period, price, priced, tariff, totals

# --- FLAT -----------------------------------------------------------------------------------------------------------


def test_flat_is_charged_once_when_first_active() -> None:
    # The start fee only applies once 1 kWh has been consumed: it is charged once, in the first period that starts
    # with at least 1 kWh consumed (period 2; period 1 starts at 0.5 kWh).
    t = tariff(el(comp("FLAT", "1.00"), min_kwh=1), el(comp("ENERGY", "0.10")))
    result = priced(
        t,
        [
            period("2024-01-15T10:00", ENERGY="0.5"),
            period("2024-01-15T10:10", ENERGY=3),
            period("2024-01-15T10:40", ENERGY=3),
        ],
        "2024-01-15T11:00",
    )
    flats = [line for line in result.lines if line.dimension == "FLAT"]
    assert [(line.period_index, line.excl_vat) for line in flats] == [(2, D("1.00"))]
    assert result.total_fixed_cost.excl_vat == D("1.00")
    assert result.total_cost.excl_vat == D("1.65")


def test_two_flat_elements_still_charge_one_fee() -> None:
    t = tariff(el(comp("FLAT", "1.00"), end_time="12:00"), el(comp("FLAT", "2.00")), el(comp("TIME", "1")))
    result = priced(t, [period("2024-01-15T11:00", TIME=1), period("2024-01-15T12:00", TIME=1)], "2024-01-15T13:00")
    assert result.total_fixed_cost.excl_vat == D("1.00")


# --- VAT ------------------------------------------------------------------------------------------------------------


def test_vat_per_component_and_omitted_vat_means_none() -> None:
    t = tariff(el(comp("FLAT", "1.00", vat="21"), comp("ENERGY", "0.50", vat="9"), comp("TIME", "2.00")))
    result = priced(t, [period("2024-01-15T10:00", ENERGY=10, TIME=1)], "2024-01-15T11:00")
    assert result.total_fixed_cost == type(result.total_fixed_cost)(excl_vat=D("1.00"), incl_vat=D("1.21"))
    assert (result.total_energy_cost.excl_vat, result.total_energy_cost.incl_vat) == (D("5.00"), D("5.45"))
    # No vat on the TIME component: no VAT applies, so incl equals excl.
    assert (result.total_time_cost.excl_vat, result.total_time_cost.incl_vat) == (D("2.00"), D("2.00"))
    assert totals(result) == (D("8.00"), D("8.66"))


# --- min_price / max_price ------------------------------------------------------------------------------------------


def test_max_price_clamps_incl_and_excl_independently() -> None:
    # 9.00 excl. stays under the 10.00 limit, but 11.25 incl. (25 % VAT) exceeds the 11.00 limit.
    t = tariff(el(comp("ENERGY", "0.30", vat="25")), max_price=price("10.00", "11.00"))
    result = priced(t, [period("2024-01-15T10:00", ENERGY=30)], "2024-01-15T11:00")
    assert totals(result) == (D("9.00"), D("11.00"))
    [adjustment] = result.limit_adjustments
    assert (adjustment.limit, adjustment.basis, adjustment.before, adjustment.adjustment) == (
        "max_price",
        "incl_vat",
        D("11.25"),
        D("-0.25"),
    )


def test_limit_without_incl_vat_moves_incl_by_the_same_amount() -> None:
    t = tariff(el(comp("ENERGY", "0.25", vat="10")), min_price=price("1.00"))
    result = priced(t, [period("2024-01-15T10:00", ENERGY="1.2")], "2024-01-15T11:00")
    assert totals(result) == (D("1.00"), D("1.03"))
    assert "LIMIT_WITHOUT_INCL_VAT" in result.warning_codes()


def test_inconsistent_limits_are_reported_and_max_wins() -> None:
    t = tariff(el(comp("ENERGY", "1")), min_price=price("5", "5"), max_price=price("3", "3"))
    result = priced(t, [period("2024-01-15T10:00", ENERGY=1)], "2024-01-15T11:00")
    assert totals(result) == (D(3), D(3))
    assert "LIMITS_INCONSISTENT" in result.warning_codes()


# --- step_size --------------------------------------------------------------------------------------------------------


def test_step_rounding_is_not_fooled_by_non_terminating_hours() -> None:
    # 10 minutes written as 10/60 h is one 600 s step, not two.
    t = tariff(el(comp("TIME", "6.00", step=600)))
    result = priced(t, [period("2024-01-15T10:00", TIME=minutes(10))], "2024-01-15T10:10")
    assert result.step_adjustments == []
    assert result.total_cost.excl_vat == D("1.00")


def test_step_size_zero_means_no_rounding_and_missing_means_one() -> None:
    zero = tariff(el(comp("ENERGY", "1.00", step=0)))
    assert priced(zero, [period("2024-01-15T10:00", ENERGY="0.0004")], "2024-01-15T11:00").step_adjustments == []
    missing = tariff(el(comp("ENERGY", "1.00", step=None)))
    result = priced(missing, [period("2024-01-15T10:00", ENERGY="0.0004")], "2024-01-15T11:00")
    assert result.total_energy_cost.excl_vat == D("0.0010")  # 0.4 Wh billed as 1 Wh
    assert "STEP_SIZE_MISSING" in result.warning_codes()


def test_time_is_rounded_when_parking_is_unpriced() -> None:
    # Parking has volume but no PARKING_TIME component: only TIME is priced, so TIME absorbs the rounding.
    t = tariff(el(comp("TIME", "6.00", step=900)))
    result = priced(
        t,
        [period("2024-01-15T10:00", TIME=minutes(20)), period("2024-01-15T10:20", PARKING_TIME=minutes(20))],
        "2024-01-15T10:40",
    )
    [step] = result.step_adjustments
    assert (step.dimension, as_minutes(step.added)) == ("TIME", D(10))
    assert result.total_time_cost.excl_vat == D("3.00")


def test_step_uses_the_last_priced_component_across_tariffs() -> None:
    # A switch of tariff mid-session (a charging-preference change): the session total is rounded once with the
    # step of the last period's component, and the earlier tariff's step is not applied at the switch.
    cheap = tariff(el(comp("ENERGY", "0.20", step=5000)), id="CHEAP")
    fast = tariff(el(comp("ENERGY", "0.40", step=1000)), id="FAST")
    result = priced(
        [cheap, fast],
        [
            period("2024-01-15T10:00", tariff_id="CHEAP", ENERGY="2.2"),
            period("2024-01-15T10:30", tariff_id="FAST", ENERGY="1.5"),
        ],
        "2024-01-15T11:00",
    )
    assert [(line.tariff_id, line.excl_vat) for line in result.lines] == [("CHEAP", D("0.440")), ("FAST", D("0.600"))]
    [step] = result.step_adjustments
    assert (step.tariff_id, step.added, step.excl_vat) == ("FAST", D("0.3"), D("0.120"))
    assert result.total_cost.excl_vat == D("1.16")
    assert result.warning_codes() == []


# --- tariff choice ------------------------------------------------------------------------------------------------


def test_period_tariff_id_selects_the_tariff() -> None:
    a = tariff(el(comp("ENERGY", "0.10")), id="A")
    b = tariff(el(comp("ENERGY", "0.30")), id="B")
    result = priced(
        [a, b],
        [period("2024-01-15T10:00", tariff_id="B", ENERGY=1), period("2024-01-15T11:00", tariff_id="A", ENERGY=1)],
        "2024-01-15T12:00",
    )
    assert [line.tariff_id for line in result.lines] == ["B", "A"]
    assert result.total_cost.excl_vat == D("0.40")


def test_unknown_and_missing_tariff_ids_fall_back_to_the_default() -> None:
    expired = tariff(el(comp("ENERGY", "9.00")), id="OLD", end_date_time="2023-01-01T00:00:00Z")
    current = tariff(el(comp("ENERGY", "0.20")), id="NEW", start_date_time="2023-01-01T00:00:00Z")
    result = priced(
        [expired, current],
        [period("2024-01-15T10:00", tariff_id="NOPE", ENERGY=1), period("2024-01-15T11:00", ENERGY=1)],
        "2024-01-15T12:00",
    )
    # The default is the first tariff valid at the session start, so the expired one is never used.
    assert [line.tariff_id for line in result.lines] == ["NEW", "NEW"]
    assert {"UNKNOWN_TARIFF_ID", "TARIFF_ID_PARTIAL"} <= set(result.warning_codes())


def test_several_tariffs_without_ids_use_the_valid_one() -> None:
    expired = tariff(el(comp("ENERGY", "9.00")), id="OLD", end_date_time="2023-01-01T00:00:00Z")
    current = tariff(el(comp("ENERGY", "0.20")), id="NEW")
    result = priced([expired, current], [period("2024-01-15T10:00", ENERGY=1)], "2024-01-15T11:00")
    assert result.lines[0].tariff_id == "NEW"
    assert result.warning_codes() == ["TARIFF_BY_VALIDITY"]


def test_single_tariff_prices_every_period_and_reports_other_ids() -> None:
    t = tariff(el(comp("ENERGY", "0.20")), id="T1")
    result = priced(t, [period("2024-01-15T10:00", tariff_id="OTHER", ENERGY=1)], "2024-01-15T11:00")
    assert result.total_cost.excl_vat == D("0.20")
    assert result.warning_codes() == ["TARIFF_ID_MISMATCH"]


def test_tariff_not_valid_at_start_is_still_used_but_reported() -> None:
    t = tariff(el(comp("ENERGY", "0.20")), end_date_time="2019-06-30T23:59:59Z")
    result = priced(t, [period("2024-01-15T10:00", ENERGY=1)], "2024-01-15T11:00")
    assert result.total_cost.excl_vat == D("0.20")
    assert result.warning_codes() == ["TARIFF_NOT_VALID_AT_START"]


def test_currency_mismatch_is_reported() -> None:
    t = tariff(el(comp("ENERGY", "0.20")))
    result = priced(t, [period("2024-01-15T10:00", ENERGY=1)], "2024-01-15T11:00", currency="CHF")
    assert result.warning_codes() == ["CURRENCY_MISMATCH"]


def test_no_tariff_is_an_error() -> None:
    with pytest.raises(PricingError, match="no tariff"):
        priced([], [period("2024-01-15T10:00", ENERGY=1)], "2024-01-15T11:00")


# --- time zone ------------------------------------------------------------------------------------------------------


def cdr_with_location(time_zone: str | None) -> dict[str, object]:
    location: dict[str, object] = {"country": "NLD"}
    if time_zone is not None:
        location["time_zone"] = time_zone
    return {
        "start_date_time": "2024-01-15T16:30:00Z",
        "end_date_time": "2024-01-15T17:30:00Z",
        "currency": "EUR",
        "cdr_location": location,
        "tariffs": [
            {
                "id": "EVENING",
                "currency": "EUR",
                "elements": [
                    {
                        "price_components": [{"type": "ENERGY", "price": D("0.50"), "step_size": 1}],
                        "restrictions": {"start_time": "17:00", "end_time": "20:00"},
                    },
                    {"price_components": [{"type": "ENERGY", "price": D("0.20"), "step_size": 1}]},
                ],
            }
        ],
        "charging_periods": [
            {"start_date_time": "2024-01-15T16:30:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}]}
        ],
    }


def test_time_zone_defaults_to_the_cdr_location() -> None:
    result = price_cdr(cdr_from_builtins(cdr_with_location("Europe/Amsterdam")))
    assert result.time_zone == "Europe/Amsterdam"
    assert result.total_cost.excl_vat == D("5.00")  # 17:30 local: evening price
    assert result.warning_codes() == []


def test_explicit_time_zone_wins_over_the_cdr() -> None:
    result = price_cdr(cdr_from_builtins(cdr_with_location("Europe/Amsterdam")), time_zone="UTC")
    assert result.total_cost.excl_vat == D("2.00")


def test_missing_time_zone_means_utc_with_a_warning() -> None:
    result = price_cdr(cdr_from_builtins(cdr_with_location(None)))
    assert result.time_zone == "UTC"
    assert result.total_cost.excl_vat == D("2.00")
    assert "NO_TIME_ZONE" in result.warning_codes()


def test_invalid_time_zone_on_the_cdr_is_reported() -> None:
    result = price_cdr(cdr_from_builtins(cdr_with_location("Mars/Olympus_Mons")))
    assert result.warning_codes()[:2] == ["INVALID_TIME_ZONE", "NO_TIME_ZONE"]


def test_invalid_time_zone_from_the_caller_is_an_error() -> None:
    with pytest.raises(PricingError, match="unknown time zone"):
        price_cdr(cdr_from_builtins(cdr_with_location(None)), time_zone="Mars/Olympus_Mons")


def test_cdr_without_tariffs_is_an_error() -> None:
    document = cdr_with_location(None)
    document["tariffs"] = []
    with pytest.raises(PricingError, match="no tariffs"):
        price_cdr(cdr_from_builtins(document))


# --- warnings about the periods -----------------------------------------------------------------------------------


def test_period_spanning_a_price_change_is_reported() -> None:
    t = tariff(el(comp("ENERGY", "0.50"), start_time="17:00"), el(comp("ENERGY", "0.20")))
    spanning = priced(t, [period("2024-01-15T16:30", ENERGY=10)], "2024-01-15T17:30")
    assert spanning.total_cost.excl_vat == D("2.00")  # priced at the period start
    [warning] = spanning.warnings
    assert (warning.code, warning.period_index) == ("PERIOD_SPANS_PRICE_CHANGE", 0)
    split = priced(t, [period("2024-01-15T16:30", ENERGY=5), period("2024-01-15T17:00", ENERGY=5)], "2024-01-15T17:30")
    assert split.warnings == []
    assert split.total_cost.excl_vat == D("3.50")


def test_kwh_threshold_crossed_inside_a_period_is_reported() -> None:
    t = tariff(el(comp("ENERGY", "0.30"), max_kwh=10), el(comp("ENERGY", "0.20")))
    result = priced(t, [period("2024-01-15T10:00", ENERGY=12)], "2024-01-15T11:00")
    assert result.warning_codes() == ["PERIOD_SPANS_PRICE_CHANGE"]
    exact = priced(t, [period("2024-01-15T10:00", ENERGY=10)], "2024-01-15T11:00")
    assert exact.warning_codes() == []


def test_periods_out_of_order_are_sorted_and_keep_their_index() -> None:
    t = tariff(el(comp("ENERGY", "0.30"), max_kwh=5), el(comp("ENERGY", "0.20")))
    result = priced(
        t,
        [period("2024-01-15T10:30", ENERGY=5), period("2024-01-15T10:00", ENERGY=5)],
        "2024-01-15T11:00",
        start="2024-01-15T10:00",
    )
    assert [(line.period_index, line.element_index) for line in result.lines] == [(1, 0), (0, 1)]
    assert "PERIODS_OUT_OF_ORDER" in result.warning_codes()


def test_negative_and_unknown_dimensions_are_reported_not_priced() -> None:
    t = tariff(el(comp("ENERGY", "0.30")))
    result = priced(
        t,
        [period("2024-01-15T10:00", ENERGY=-2, STATE_OF_CHARGE=80, CURRENT=16, FOO=1)],
        "2024-01-15T11:00",
    )
    assert result.total_cost.excl_vat == D(0)
    assert result.total_energy == D(-2)
    assert result.warning_codes() == ["UNKNOWN_DIMENSION", "NEGATIVE_VOLUME"]


def test_unpriced_volume_names_the_skipped_elements() -> None:
    t = tariff(el(comp("TIME", "1.00"), day_of_week=["SUNDAY"]))
    result = priced(t, [period("2024-01-15T10:00", TIME=1)], "2024-01-15T11:00")
    [warning] = result.warnings
    assert warning.code == "UNPRICED_VOLUME"
    assert "element 0: day MONDAY in day_of_week [SUNDAY] is false" in warning.message


# --- totals and rounding ------------------------------------------------------------------------------------------


def test_totals_volumes_and_explanation_line() -> None:
    t = tariff(el(comp("ENERGY", "0.25", vat="10"), comp("PARKING_TIME", "2", step=60)))
    result = priced(
        t,
        [period("2024-01-15T10:00", ENERGY="7.5", TIME=1), period("2024-01-15T11:00", PARKING_TIME="0.25")],
        "2024-01-15T11:15",
    )
    assert (result.total_energy, result.total_time, result.total_parking_time) == (D("7.5"), D("1.25"), D("0.25"))
    line = result.lines[0]
    assert (line.period_start, line.dimension, line.volume, line.element_index, line.component_index) == (
        at("2024-01-15T10:00"),
        "ENERGY",
        D("7.5"),
        0,
        0,
    )
    assert (line.price, line.vat, line.excl_vat, line.incl_vat, line.reasons) == (
        D("0.25"),
        D("10"),
        D("1.875"),
        D("2.0625"),
        ["no restrictions"],
    )


def test_totals_are_rounded_half_up_to_four_decimals_once() -> None:
    t = tariff(el(comp("ENERGY", "0.00005"), comp("TIME", "0.00005")))
    periods = [period("2024-01-15T10:00", ENERGY=1, TIME=1)]
    rounded = priced(t, periods, "2024-01-15T11:00")
    # Each line is 0.00005; rounding per line would give 0.0001 + 0.0001 = 0.0002, rounding once gives 0.0001.
    assert rounded.total_cost.excl_vat == D("0.0001")
    assert rounded.total_energy_cost.excl_vat == D("0.0001")
    exact = priced(t, periods, "2024-01-15T11:00", places=None)
    assert exact.total_cost.excl_vat == D("0.00010")


def test_caller_decimal_context_does_not_change_prices() -> None:
    t = tariff(el(comp("ENERGY", "0.123456")))
    periods = [period("2024-01-15T10:00", ENERGY="17.3457")]
    expected = priced(t, periods, "2024-01-15T11:00").total_cost
    with localcontext() as context:
        context.prec = 3
        assert priced(t, periods, "2024-01-15T11:00").total_cost == expected


def test_price_session_accepts_a_tzinfo_and_reservation_override() -> None:
    t = tariff(el(comp("TIME", "1.00"), reservation="RESERVATION_EXPIRES"), el(comp("TIME", "3.00")))
    result = price_session(
        t,
        [period("2024-01-15T10:00", RESERVATION_TIME=1)],
        start=at("2024-01-15T10:00"),
        end=at("2024-01-15T11:00"),
        time_zone=ZoneInfo("Europe/Brussels"),
        reservation_expired=False,
    )
    # Not expired: the RESERVATION_EXPIRES element does not apply and there is no RESERVATION element.
    assert result.total_reservation_cost.excl_vat == Decimal(0)
    assert result.time_zone == "Europe/Brussels"
