"""Properties of the engine over generated tariffs and sessions (hypothesis).

Generated tariffs use non-negative prices, VAT >= 0 and consistent limits (min <= max, incl >= excl); sessions use
OCPI-precision (4 decimal) volumes. Monotonicity is stated for volume added to the *last* period: adding energy to
an earlier period may legitimately move later periods to a cheaper tiered element (min_kwh), and giving volume to
a period that had none may change which step_size applies (mod_cdrs "step_size": the last period's step).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Context, Decimal, localcontext
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.pricing import (
    CdrDimension,
    ChargingPeriod,
    PriceComponent,
    PriceResult,
    StatedPrice,
    Tariff,
    TariffElement,
    TariffRestrictions,
    price_session,
)
from tests.clearing.builders import at

PROPERTY = settings(max_examples=120, deadline=None, database=None)
# The engine computes with 40 significant digits; hours like 1/3600 are not exact, so sums are compared this close.
TOLERANCE = Decimal("1e-30")
START = at("2024-01-15T16:00")  # a Monday

money = st.decimals(min_value=0, max_value=10, places=2)
vat = st.none() | st.decimals(min_value=0, max_value=30, places=1)
step = st.sampled_from([0, 1, 60, 300, 900, 1000, 5000])
clock = st.sampled_from(["00:00", "06:00", "16:30", "17:00", "20:00"])


@st.composite
def restrictions(draw: st.DrawFn) -> TariffRestrictions | None:
    if draw(st.booleans()):
        return None
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["start_time"], fields["end_time"] = draw(clock), draw(clock)
    if draw(st.booleans()):
        fields["max_kwh" if draw(st.booleans()) else "min_kwh"] = Decimal(draw(st.integers(0, 40)))
    if draw(st.booleans()):
        fields["max_power" if draw(st.booleans()) else "min_power"] = Decimal(draw(st.integers(0, 100)))
    if draw(st.booleans()):
        fields["max_duration" if draw(st.booleans()) else "min_duration"] = Decimal(draw(st.integers(0, 12)) * 600)
    if draw(st.booleans()):
        fields["day_of_week"] = draw(st.lists(st.sampled_from(["MONDAY", "TUESDAY", "SUNDAY"]), min_size=1))
    return TariffRestrictions(**fields)


@st.composite
def elements(draw: st.DrawFn) -> TariffElement:
    kinds = draw(st.lists(st.sampled_from(["ENERGY", "TIME", "PARKING_TIME", "FLAT"]), min_size=1, max_size=4))
    components = [
        PriceComponent(type=kind, price=draw(money), vat=draw(vat), step_size=Decimal(draw(step))) for kind in kinds
    ]
    return TariffElement(price_components=components, restrictions=draw(restrictions()))


@st.composite
def limits(draw: st.DrawFn) -> tuple[StatedPrice | None, StatedPrice | None]:
    low_excl = draw(st.decimals(min_value=0, max_value=5, places=2))
    low_incl = low_excl + draw(st.decimals(min_value=0, max_value=2, places=2))
    high_excl = low_excl + draw(st.decimals(min_value=0, max_value=40, places=2))
    high_incl = max(high_excl, low_incl) + draw(st.decimals(min_value=0, max_value=5, places=2))
    low = StatedPrice(excl_vat=low_excl, incl_vat=low_incl) if draw(st.booleans()) else None
    high = StatedPrice(excl_vat=high_excl, incl_vat=high_incl) if draw(st.booleans()) else None
    return low, high


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    low, high = draw(limits())
    return Tariff(
        id="P",
        currency="EUR",
        elements=draw(st.lists(elements(), min_size=1, max_size=4)),
        min_price=low,
        max_price=high,
    )


volume = st.decimals(min_value=0, max_value=40, places=4)
hours = st.decimals(min_value=0, max_value=3, places=4)


@st.composite
def sessions(draw: st.DrawFn) -> list[ChargingPeriod]:
    count = draw(st.integers(1, 4))
    offsets = sorted(draw(st.lists(st.integers(0, 600), min_size=count, max_size=count, unique=True)))
    periods = []
    for index, offset in enumerate(offsets):
        dims = [
            CdrDimension(type="ENERGY", volume=draw(volume)),
            CdrDimension(type="TIME", volume=draw(hours)),
            CdrDimension(type="MAX_POWER", volume=Decimal(draw(st.integers(0, 150)))),
        ]
        if index == count - 1 or draw(st.booleans()):
            dims.append(CdrDimension(type="PARKING_TIME", volume=draw(hours)))
        start = START + timedelta(minutes=offsets[0] if index == 0 else offset)
        periods.append(ChargingPeriod(start_date_time=start, dimensions=dims))
    return periods


def run(tariff: Tariff, periods: list[ChargingPeriod], *, places: int | None = 4) -> PriceResult:
    return price_session(
        tariff, periods, start=START, end=START + timedelta(hours=12), time_zone="Europe/Amsterdam", places=places
    )


def prices(result: PriceResult) -> list[tuple[Decimal, Decimal]]:
    return [
        (p.excl_vat, p.incl_vat)
        for p in (
            result.total_cost,
            result.total_fixed_cost,
            result.total_energy_cost,
            result.total_time_cost,
            result.total_parking_cost,
            result.total_reservation_cost,
        )
    ]


def with_more(periods: list[ChargingPeriod], kind: str, extra: Decimal) -> list[ChargingPeriod]:
    *head, last = periods
    dims = [CdrDimension(type=d.type, volume=d.volume + extra if d.type == kind else d.volume) for d in last.dimensions]
    return [*head, ChargingPeriod(start_date_time=last.start_date_time, dimensions=dims)]


@PROPERTY
@given(tariffs(), sessions())
def test_never_negative(tariff: Tariff, periods: list[ChargingPeriod]) -> None:
    result = run(tariff, periods)
    assert all(excl >= 0 and incl >= 0 for excl, incl in prices(result))
    assert min(result.total_energy, result.total_time, result.total_parking_time) >= 0


@PROPERTY
@given(tariffs(), sessions())
def test_incl_vat_at_least_excl_vat(tariff: Tariff, periods: list[ChargingPeriod]) -> None:
    result = run(tariff, periods)
    assert all(incl >= excl for excl, incl in prices(result))


@PROPERTY
@given(tariffs(), sessions())
def test_min_and_max_price_hold(tariff: Tariff, periods: list[ChargingPeriod]) -> None:
    total = run(tariff, periods).total_cost
    if tariff.min_price is not None:
        assert total.excl_vat >= tariff.min_price.excl_vat
        assert tariff.min_price.incl_vat is None or total.incl_vat >= tariff.min_price.incl_vat
    if tariff.max_price is not None:
        assert total.excl_vat <= tariff.max_price.excl_vat
        assert tariff.max_price.incl_vat is None or total.incl_vat <= tariff.max_price.incl_vat


@PROPERTY
@given(tariffs(), sessions(), st.sampled_from(["ENERGY", "TIME", "PARKING_TIME"]), st.decimals("0.0001", 20, places=4))
def test_monotone_in_the_last_periods_volume(
    tariff: Tariff, periods: list[ChargingPeriod], kind: str, extra: Decimal
) -> None:
    # Start from a positive volume so the last priced period (whose step applies) stays the same.
    base = with_more(periods, kind, Decimal("0.0001"))
    before, after = run(tariff, base).total_cost, run(tariff, with_more(base, kind, extra)).total_cost
    assert after.excl_vat >= before.excl_vat
    assert after.incl_vat >= before.incl_vat


@PROPERTY
@given(tariffs(), sessions())
def test_step_rounding_never_decreases_a_volume(tariff: Tariff, periods: list[ChargingPeriod]) -> None:
    result = run(tariff, periods, places=None)
    with localcontext(Context(prec=60)):
        for step in result.step_adjustments:
            unit = Decimal(1000) if step.dimension == "ENERGY" else Decimal(3600)
            assert step.added > 0
            assert abs(step.billed - (step.consumed + step.added)) < TOLERANCE
            steps = step.billed * unit / step.step_size
            assert abs(steps - steps.to_integral_value()) < TOLERANCE  # a whole number of steps
            assert step.added * unit < step.step_size  # and the smallest such number
            billable = sum(line.volume for line in result.lines if line.dimension == step.dimension)
            assert step.consumed == billable


@PROPERTY
@given(tariffs(), sessions())
def test_totals_are_the_sum_of_the_explanation(tariff: Tariff, periods: list[ChargingPeriod]) -> None:
    result = run(tariff, periods, places=None)
    with localcontext(Context(prec=60)):
        for basis in ("excl_vat", "incl_vat"):
            lines = sum((getattr(item, basis) for item in [*result.lines, *result.step_adjustments]), Decimal(0))
            adjustments = sum((a.adjustment for a in result.limit_adjustments if a.basis == basis), Decimal(0))
            assert abs(getattr(result.total_cost, basis) - (lines + adjustments)) < TOLERANCE
