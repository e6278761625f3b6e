"""The OCPI 2.2.1 tariff pricing engine: charging periods plus tariff(s) in, CDR totals and explanation out.

The rules (mod_tariffs "Tariff Object", "TariffRestrictions", "PriceComponent"; mod_cdrs "ChargingPeriod",
"step_size"), with the choices the spec leaves open recorded in ADR 0101 and the rounding in ADR 0102:

1. For every charging period and every dimension with volume, the first tariff element (in list order) that has a
   price component for that dimension and whose restrictions all hold prices it. No such element: free, and a
   warning. Restrictions are evaluated at the period start, in the location's local time.
2. FLAT is charged once per session: in the first period where a FLAT component is active. A reservation has its
   own FLAT (from elements with a ``reservation`` restriction), charged once as well.
3. step_size is applied once per session to the total billable volume: ENERGY on its own; TIME and PARKING_TIME
   together, where parking absorbs the rounding if any parking is priced; reservation time on its own. The step of
   the last priced period's component is used and the extra volume is billed at that period's price.
4. VAT is computed per line from the component's ``vat`` percentage; no ``vat`` means no VAT (incl = excl).
5. The session total is clamped to ``min_price``/``max_price``, excluding and including VAT separately.
6. Totals are rounded once, at the end (ADR 0102).

The module is pure: no I/O, no clock, no global state; Decimal arithmetic runs in a private context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import (
    ROUND_CEILING,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clearing.pricing.inputs import Cdr, ChargingPeriod, PriceComponent, StatedPrice, Tariff
from clearing.pricing.restrictions import ReservationState, Situation, evaluate, number
from clearing.pricing.result import (
    ZERO,
    LimitAdjustment,
    Price,
    PriceLine,
    PriceResult,
    PriceWarning,
    StepAdjustment,
)

__all__ = ["PricingError", "price_cdr", "price_session"]

# 40 significant digits keep every intermediate exact for OCPI's 4-decimal inputs; only the final totals are
# rounded (ADR 0102). The context is private so a caller's global Decimal settings cannot change a price.
_CONTEXT: Final = Context(prec=40, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])

_ONE: Final = Decimal(1)
_HUNDRED: Final = Decimal(100)
_SECONDS_PER_HOUR: Final = Decimal(3600)
_WH_PER_KWH: Final = Decimal(1000)
# Volumes within this fraction of a step of a multiple are taken as that multiple, so that 10 min written as
# Decimal(10) / 60 h is billed as one 600 s step, not two (ADR 0102).
_STEP_TOLERANCE: Final = Decimal("1e-18")
_EPSILON_KWH: Final = Decimal("1e-9")
_EPSILON_TIME: Final = timedelta(microseconds=1)

# CDR dimensions that carry a priced volume, and the price component type that prices each (mod_cdrs
# "CdrDimensionType"; reservation time is priced by the TIME component of a reservation element, mod_tariffs
# "TariffDimensionType").
_COMPONENT_FOR: Final = {
    "RESERVATION_TIME": "TIME",
    "ENERGY": "ENERGY",
    "TIME": "TIME",
    "PARKING_TIME": "PARKING_TIME",
}
_CATEGORY: Final = {
    "RESERVATION_TIME": "reservation",
    "ENERGY": "energy",
    "TIME": "time",
    "PARKING_TIME": "parking",
}
_UNIT: Final = {"ENERGY": " kWh", "TIME": " h", "PARKING_TIME": " h", "RESERVATION_TIME": " h"}
# Period readings used only to evaluate min/max current and power restrictions.
_READINGS: Final = frozenset({"MIN_CURRENT", "MAX_CURRENT", "MIN_POWER", "MAX_POWER"})
# Session-only dimensions (mod_cdrs "CdrDimensionType"): not used for CDR pricing.
_SESSION_ONLY: Final = frozenset({"CURRENT", "POWER", "STATE_OF_CHARGE", "ENERGY_IMPORT", "ENERGY_EXPORT"})
_COMPONENT_TYPES: Final = frozenset({"ENERGY", "FLAT", "PARKING_TIME", "TIME"})


class PricingError(ValueError):
    """The session cannot be priced at all (no tariff, unknown time zone given by the caller)."""


@dataclass(slots=True)
class _Period:
    index: int  # position in the caller's list, so lines point back at the CDR
    start: datetime
    end: datetime
    tariff_id: str | None
    volumes: dict[str, Decimal]
    readings: dict[str, Decimal]

    @property
    def is_reservation(self) -> bool:
        return "RESERVATION_TIME" in self.volumes


@dataclass(frozen=True, slots=True)
class _Choice:
    tariff: Tariff
    element_index: int
    component_index: int
    component: PriceComponent
    reasons: list[str]
    skipped: list[str]


@dataclass(slots=True)
class _Totals:
    lines: list[PriceLine] = field(default_factory=list)
    steps: list[StepAdjustment] = field(default_factory=list)
    limits: list[LimitAdjustment] = field(default_factory=list)


def _seconds(delta: timedelta) -> Decimal:
    return Decimal(delta.days * 86_400 + delta.seconds) + Decimal(delta.microseconds) / Decimal(1_000_000)


def _with_vat(amount: Decimal, vat: Decimal | None) -> Decimal:
    # mod_tariffs "PriceComponent": an omitted vat means no VAT applies, which differs from 0 %.
    if vat is None:
        return amount
    return amount * (_ONE + vat / _HUNDRED)


def _ceil_to_step(amount: Decimal, step: Decimal) -> Decimal:
    steps = amount / step
    nearest = steps.to_integral_value(rounding=ROUND_HALF_EVEN)
    if abs(steps - nearest) <= _STEP_TOLERANCE:
        return nearest * step
    return steps.to_integral_value(rounding=ROUND_CEILING) * step


def _zone_name(zone: tzinfo) -> str:
    key = getattr(zone, "key", None)
    return key if isinstance(key, str) else str(zone)


def _resolve_zone(time_zone: str | tzinfo | None) -> tzinfo | None:
    if time_zone is None or isinstance(time_zone, tzinfo):
        return time_zone
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PricingError(f"unknown time zone {time_zone!r}") from None


def _valid_at(tariff: Tariff, moment: datetime) -> bool:
    # mod_tariffs "Tariff Object": start_date_time is when the tariff becomes active, end_date_time when it ends.
    if tariff.start_date_time is not None and moment < tariff.start_date_time:
        return False
    return tariff.end_date_time is None or moment < tariff.end_date_time


def _reservation_kind(tariff: Tariff, element_index: int) -> str | None:
    restrictions = tariff.elements[element_index].restrictions
    return None if restrictions is None else restrictions.reservation


class _Session:
    """One pricing run. Holds the inputs, the warnings gathered so far, and the lines."""

    def __init__(
        self,
        tariffs: Sequence[Tariff],
        periods: Sequence[ChargingPeriod],
        *,
        start: datetime,
        end: datetime,
        zone: tzinfo | None,
        currency: str | None,
        reservation_expired: bool | None,
        places: int | None,
        warnings: list[PriceWarning],
    ) -> None:
        self.start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
        self.end = end if end.tzinfo is not None else end.replace(tzinfo=UTC)
        self.currency = currency
        self.places = places
        self.warnings: list[PriceWarning] = []
        self._seen: set[tuple[str, str, int | None]] = set()
        for warning in warnings:
            self.warn(warning.code, warning.message, warning.period_index)
        if zone is None:
            self.warn(
                "NO_TIME_ZONE",
                "no time zone given (nor on the CDR location); restrictions are evaluated in UTC",
            )
            zone = UTC
        self.zone = zone
        self.tariffs = list(tariffs)
        self.raw_periods = list(periods)
        self.reservation_expired = reservation_expired
        self.totals = _Totals()
        # By (id of a tariff of this run, component type); the tariffs are held by the run, so ids are stable.
        self._components: dict[tuple[int, str], list[tuple[int, int]]] = {}

    # --- bookkeeping ------------------------------------------------------------------------------------------------

    def warn(self, code: str, message: str, period_index: int | None = None) -> None:
        key = (code, message, period_index)
        if key not in self._seen:
            self._seen.add(key)
            self.warnings.append(PriceWarning(code=code, message=message, period_index=period_index))

    def quantize(self, value: Decimal) -> Decimal:
        if self.places is None:
            return value
        return value.quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_UP)

    def step_of(self, tariff: Tariff, element_index: int, component: PriceComponent) -> Decimal:
        where = f"tariff {tariff.id} element {element_index} {component.type}"
        if component.step_size is None:
            self.warn("STEP_SIZE_MISSING", f"{where}: step_size missing, read as 1")
            return _ONE
        if component.step_size < 0:
            self.warn("STEP_SIZE_NEGATIVE", f"{where}: step_size {number(component.step_size)} read as 0")
            return ZERO
        return component.step_size

    # --- inputs -----------------------------------------------------------------------------------------------------

    def check_tariffs(self) -> None:
        for tariff in self.tariffs:
            if self.currency and tariff.currency and tariff.currency.upper() != self.currency.upper():
                self.warn(
                    "CURRENCY_MISMATCH",
                    f"tariff {tariff.id} is in {tariff.currency} but the session is in {self.currency}",
                )
            for element_index, element in enumerate(tariff.elements):
                for component in element.price_components:
                    if component.type not in _COMPONENT_TYPES:
                        self.warn(
                            "UNKNOWN_COMPONENT_TYPE",
                            f"tariff {tariff.id} element {element_index}: price component type {component.type!r} "
                            "is unknown and never prices anything",
                        )

    def prepare_periods(self) -> list[_Period]:
        if self.end < self.start:
            self.warn("END_BEFORE_START", "the session ends before it starts")
        if not self.raw_periods:
            self.warn("NO_CHARGING_PERIODS", "there are no charging periods, so nothing is priced")
        ordered = sorted(enumerate(self.raw_periods), key=lambda item: item[1].start_date_time)
        if [index for index, _ in ordered] != list(range(len(ordered))):
            # mod_cdrs "ChargingPeriod": a period ends when the next one starts, so only time order makes sense.
            self.warn("PERIODS_OUT_OF_ORDER", "charging periods are not in time order; they were sorted")
        periods: list[_Period] = []
        for position, (index, raw) in enumerate(ordered):
            end = ordered[position + 1][1].start_date_time if position + 1 < len(ordered) else self.end
            if raw.start_date_time < self.start:
                self.warn("PERIOD_BEFORE_SESSION", "the period starts before the session", index)
            if end < raw.start_date_time:
                self.warn("PERIOD_AFTER_SESSION", "the period starts after the session ends", index)
                end = raw.start_date_time
            volumes: dict[str, Decimal] = {}
            readings: dict[str, Decimal] = {}
            for dimension in raw.dimensions:
                kind = dimension.type
                if kind in _COMPONENT_FOR:
                    if kind in volumes:
                        self.warn("DUPLICATE_DIMENSION", f"{kind} appears more than once; volumes were added", index)
                    volumes[kind] = volumes.get(kind, ZERO) + dimension.volume
                elif kind in _READINGS:
                    previous = readings.get(kind)
                    if previous is None:
                        readings[kind] = dimension.volume
                    else:
                        # Keep the most extreme reading: the lowest minimum, the highest maximum.
                        pick = min if kind.startswith("MIN") else max
                        readings[kind] = pick(previous, dimension.volume)
                elif kind not in _SESSION_ONLY:
                    self.warn("UNKNOWN_DIMENSION", f"dimension type {kind!r} is unknown and was ignored", index)
            periods.append(_Period(index, raw.start_date_time, end, raw.tariff_id, volumes, readings))
        return periods

    def select_tariffs(self, periods: list[_Period]) -> list[Tariff]:
        """The tariff for each period (ADR 0101, decision 1)."""
        valid = [tariff for tariff in self.tariffs if _valid_at(tariff, self.start)]
        if valid:
            default = valid[0]
        else:
            default = self.tariffs[0]
            self.warn(
                "TARIFF_NOT_VALID_AT_START",
                f"no given tariff is valid at the session start {self.start.isoformat()}; using tariff {default.id}",
            )
        if len(self.tariffs) == 1:
            for period in periods:
                if period.tariff_id and default.id and period.tariff_id.upper() != default.id.upper():
                    self.warn(
                        "TARIFF_ID_MISMATCH",
                        f"period names tariff {period.tariff_id}; priced with the given tariff {default.id}",
                        period.index,
                    )
            return [default] * len(periods)
        named = [period for period in periods if period.tariff_id]
        if named and len(named) != len(periods):
            self.warn(
                "TARIFF_ID_PARTIAL",
                f"some periods name a tariff and some do not; the latter use tariff {default.id}",
            )
        if not named:
            self.warn(
                "TARIFF_BY_VALIDITY",
                f"{len(self.tariffs)} tariffs given and no period names one; using tariff {default.id}, "
                "the first valid at the session start",
            )
        chosen: list[Tariff] = []
        for period in periods:
            if not period.tariff_id:
                chosen.append(default)
                continue
            candidates = [t for t in self.tariffs if t.id and t.id.upper() == period.tariff_id.upper()]
            if not candidates:
                self.warn(
                    "UNKNOWN_TARIFF_ID",
                    f"period names tariff {period.tariff_id}, which was not given; using tariff {default.id}",
                    period.index,
                )
                chosen.append(default)
                continue
            current = [t for t in candidates if _valid_at(t, self.start)]
            chosen.append(current[0] if current else candidates[0])
        return chosen

    # --- element choice ---------------------------------------------------------------------------------------------

    def _elements_with(self, tariff: Tariff, component_type: str) -> list[tuple[int, int]]:
        """(element index, index of its first ``component_type`` component) of every element that has one."""
        key = (id(tariff), component_type)
        found = self._components.get(key)
        if found is None:
            found = self._components[key] = [
                (element_index, component_index)
                for element_index, element in enumerate(tariff.elements)
                for component_index in [
                    next((i for i, c in enumerate(element.price_components) if c.type == component_type), None)
                ]
                if component_index is not None
            ]
        return found

    def choose(
        self, tariff: Tariff, component_type: str, situation: Situation, *, report: bool = True
    ) -> tuple[_Choice | None, list[str]]:
        """The first element with a ``component_type`` component whose restrictions hold (mod_tariffs "Tariff")."""
        # Only the elements that have such a component, in tariff order: the same choice as walking every element,
        # without looking through each one's components again for every period and dimension (ADR 0211).
        order = self._elements_with(tariff, component_type)
        if situation.reservation is ReservationState.EXPIRED:
            # mod_tariffs "ReservationRestrictionType" note: for an expired reservation the RESERVATION_EXPIRES
            # element prices it even when a RESERVATION element comes first in the list.
            order = sorted(
                order, key=lambda pair: 0 if _reservation_kind(tariff, pair[0]) == ReservationState.EXPIRED else 1
            )
        skipped: list[str] = []
        for element_index, component_index in order:
            element = tariff.elements[element_index]
            verdict = evaluate(element.restrictions, situation)
            if report:
                for issue in verdict.issues:
                    self.warn(issue.code, f"tariff {tariff.id} element {element_index}: {issue.message}")
            if verdict.matched:
                choice = _Choice(
                    tariff,
                    element_index,
                    component_index,
                    element.price_components[component_index],
                    verdict.held,
                    skipped,
                )
                return choice, skipped
            skipped.append(f"element {element_index}: " + "; ".join(verdict.failed))
        return None, skipped

    def add_line(self, period: _Period, dimension: str, volume: Decimal, choice: _Choice, category: str) -> None:
        component = choice.component
        step = ZERO if dimension == "FLAT" else self.step_of(choice.tariff, choice.element_index, component)
        excl = component.price if dimension == "FLAT" else volume * component.price
        self.totals.lines.append(
            PriceLine(
                period_index=period.index,
                period_start=period.start,
                dimension=dimension,
                volume=volume,
                category=category,
                tariff_id=choice.tariff.id,
                element_index=choice.element_index,
                component_index=choice.component_index,
                price=component.price,
                vat=component.vat,
                step_size=step,
                reasons=choice.reasons,
                skipped=choice.skipped,
                excl_vat=excl,
                incl_vat=_with_vat(excl, component.vat),
            )
        )

    def check_period_end(
        self, period: _Period, dimension: str, tariff: Tariff, situation: Situation, chosen: int | None
    ) -> None:
        """Warn when the element choice would differ just before the period ends (ADR 0101, decision 2)."""
        if period.end <= period.start:
            return
        energy = max(period.volumes.get("ENERGY", ZERO), ZERO)
        # Built field by field: dataclasses.replace was a tenth of the engine's time (ADR 0211).
        at_end = Situation(
            (period.end - _EPSILON_TIME).astimezone(self.zone),
            situation.duration_s + _seconds(period.end - period.start - _EPSILON_TIME),
            situation.energy_kwh + (energy - _EPSILON_KWH if energy > 0 else ZERO),
            situation.min_current,
            situation.max_current,
            situation.min_power,
            situation.max_power,
            situation.reservation,
        )
        other, _ = self.choose(tariff, _COMPONENT_FOR[dimension], at_end, report=False)
        other_index = None if other is None else other.element_index
        if other_index != chosen:

            def name(index: int | None) -> str:
                return "no element" if index is None else f"element {index}"

            self.warn(
                "PERIOD_SPANS_PRICE_CHANGE",
                f"{dimension} is priced by {name(chosen)} at the period start but {name(other_index)} applies "
                "before its end; the CPO should have started a new period (mod_cdrs ChargingPeriod)",
                period.index,
            )

    # --- the run ----------------------------------------------------------------------------------------------------

    def run(self) -> PriceResult:
        self.check_tariffs()
        periods = self.prepare_periods()
        tariffs = self.select_tariffs(periods) if periods else [self.tariffs[0]]

        has_reservation = any(period.is_reservation for period in periods)
        charged = any(
            period.volumes.get(kind, ZERO) > 0 for period in periods for kind in ("ENERGY", "TIME", "PARKING_TIME")
        )
        expired = self.reservation_expired
        if expired is None:
            # A reservation that was never followed by charging or parking lapsed (ADR 0101, decision 9).
            expired = has_reservation and not charged
        reservation_state = ReservationState.EXPIRED if expired else ReservationState.ACTIVE
        session_start = self.start
        if has_reservation:
            # The charging session begins when the reservation ends (mod_tariffs "reservation").
            session_start = next((p.start for p in periods if not p.is_reservation), self.end)

        energy_so_far = ZERO
        session_flat = False
        reservation_flat = False
        for period, tariff in zip(periods, tariffs, strict=True):
            local = period.start.astimezone(self.zone)
            base = Situation(
                local=local,
                duration_s=max(_seconds(period.start - session_start), ZERO),
                energy_kwh=energy_so_far,
                min_current=period.readings.get("MIN_CURRENT"),
                max_current=period.readings.get("MAX_CURRENT"),
                min_power=period.readings.get("MIN_POWER"),
                max_power=period.readings.get("MAX_POWER"),
            )
            reserved = Situation(
                local,
                max(_seconds(period.start - self.start), ZERO),
                energy_so_far,
                base.min_current,
                base.max_current,
                base.min_power,
                base.max_power,
                reservation_state,
            )
            # FLAT: once per session, and once for the reservation (ADR 0101, decisions 6 and 9).
            if period.is_reservation and not reservation_flat:
                choice, _ = self.choose(tariff, "FLAT", reserved)
                if choice is not None:
                    self.add_line(period, "FLAT", _ONE, choice, "reservation")
                    reservation_flat = True
            if not period.is_reservation and not session_flat:
                choice, _ = self.choose(tariff, "FLAT", base)
                if choice is not None:
                    self.add_line(period, "FLAT", _ONE, choice, "fixed")
                    session_flat = True
            for dimension, component_type in _COMPONENT_FOR.items():
                volume = period.volumes.get(dimension)
                if volume is None or volume == 0:
                    continue
                if volume < 0:
                    self.warn(
                        "NEGATIVE_VOLUME",
                        f"{dimension} volume {number(volume)} is negative (V2G?); it is not priced",
                        period.index,
                    )
                    continue
                situation = reserved if dimension == "RESERVATION_TIME" else base
                choice, skipped = self.choose(tariff, component_type, situation)
                if choice is None:
                    why = f" ({'; '.join(skipped)})" if skipped else ""
                    self.warn(
                        "UNPRICED_VOLUME",
                        f"{dimension} {number(volume)}{_UNIT[dimension]} has no matching {component_type} price "
                        f"component in tariff {tariff.id}{why}; it is free",
                        period.index,
                    )
                else:
                    self.add_line(period, dimension, volume, choice, _CATEGORY[dimension])
                self.check_period_end(
                    period, dimension, tariff, situation, None if choice is None else choice.element_index
                )
            energy_so_far += period.volumes.get("ENERGY", ZERO)

        self.apply_steps()
        limits_from = tariffs[0] if tariffs else self.tariffs[0]
        self.check_limits_source(limits_from, tariffs)
        return self.result(periods, session_start, limits_from)

    def apply_steps(self) -> None:
        lines = self.totals.lines
        self.round_budget(
            [line for line in lines if line.dimension == "ENERGY"],
            _WH_PER_KWH,
            "ENERGY total rounded once per session with the step of the last priced period (mod_cdrs step_size)",
        )
        parking = [line for line in lines if line.dimension == "PARKING_TIME"]
        if parking:
            self.round_budget(
                parking,
                _SECONDS_PER_HOUR,
                "TIME and PARKING_TIME share one rounding; parking is priced, so the parking total absorbs it and "
                "charging time is not rounded (mod_cdrs step_size)",
            )
        else:
            self.round_budget(
                [line for line in lines if line.dimension == "TIME"],
                _SECONDS_PER_HOUR,
                "TIME total rounded once per session with the step of the last priced period (mod_cdrs step_size)",
            )
        self.round_budget(
            [line for line in lines if line.dimension == "RESERVATION_TIME"],
            _SECONDS_PER_HOUR,
            "reservation time total rounded once with the step of the last priced reservation period (ADR 0101)",
        )

    def round_budget(self, lines: list[PriceLine], unit: Decimal, reason: str) -> None:
        if not lines:
            return
        last = lines[-1]
        if last.step_size == 0:
            return  # step_size 0: no rounding (the spec's own free-of-charge example uses it)
        consumed = sum((line.volume for line in lines), ZERO)
        consumed_units = consumed * unit
        billed_units = _ceil_to_step(consumed_units, last.step_size)
        if billed_units <= consumed_units:
            return
        added = (billed_units - consumed_units) / unit
        excl = added * last.price
        self.totals.steps.append(
            StepAdjustment(
                dimension=last.dimension,
                category=last.category,
                period_index=last.period_index,
                period_start=last.period_start,
                tariff_id=last.tariff_id,
                element_index=last.element_index,
                component_index=last.component_index,
                step_size=last.step_size,
                consumed=consumed,
                billed=billed_units / unit,
                added=added,
                price=last.price,
                vat=last.vat,
                excl_vat=excl,
                incl_vat=_with_vat(excl, last.vat),
                reason=reason,
            )
        )

    def check_limits_source(self, limits_from: Tariff, tariffs: list[Tariff]) -> None:
        for tariff in tariffs:
            if tariff is not limits_from and (
                tariff.min_price != limits_from.min_price or tariff.max_price != limits_from.max_price
            ):
                self.warn(
                    "LIMITS_FROM_FIRST_TARIFF",
                    f"tariffs {limits_from.id} and {tariff.id} have different min/max prices; "
                    f"those of {limits_from.id}, the tariff of the first period, were applied",
                )

    def apply_limits(self, total: Price, tariff: Tariff) -> Price:
        """Clamp the session total to min_price/max_price, excl. and incl. VAT separately (mod_tariffs notes)."""
        low, high = tariff.min_price, tariff.max_price
        if low is not None and high is not None and low.excl_vat > high.excl_vat:
            self.warn("LIMITS_INCONSISTENT", "min_price is above max_price; max_price wins")
        excl, incl = total.excl_vat, total.incl_vat
        if low is not None:
            excl, incl = self.clamp("min_price", low, excl, incl)
        if high is not None:
            excl, incl = self.clamp("max_price", high, excl, incl)
        return Price(excl_vat=excl, incl_vat=incl)

    def clamp(self, name: str, limit: StatedPrice, excl: Decimal, incl: Decimal) -> tuple[Decimal, Decimal]:
        def crosses(value: Decimal, bound: Decimal) -> bool:
            return value < bound if name == "min_price" else value > bound

        new_excl = limit.excl_vat if crosses(excl, limit.excl_vat) else excl
        if new_excl != excl:
            self.record_limit(name, "excl_vat", excl, limit.excl_vat, new_excl)
        if limit.incl_vat is not None:
            new_incl = limit.incl_vat if crosses(incl, limit.incl_vat) else incl
        else:
            # No incl_vat on the limit: the VAT of the adjustment is unknown, so it carries none (ADR 0101).
            new_incl = incl + (new_excl - excl)
            if new_excl != excl:
                self.warn(
                    "LIMIT_WITHOUT_INCL_VAT",
                    f"{name} has no incl_vat; the amount incl. VAT moved by the excl. VAT adjustment",
                )
        if new_incl != incl:
            self.record_limit(
                name, "incl_vat", incl, limit.incl_vat if limit.incl_vat is not None else new_incl, new_incl
            )
        return new_excl, new_incl

    def record_limit(self, name: str, basis: str, before: Decimal, bound: Decimal, after: Decimal) -> None:
        direction = "below" if name == "min_price" else "above"
        self.totals.limits.append(
            LimitAdjustment(
                limit=name,
                basis=basis,
                before=before,
                limit_value=bound,
                after=after,
                adjustment=after - before,
                reason=f"session total {basis} {number(before)} is {direction} {name} {number(bound)}",
            )
        )

    def result(self, periods: list[_Period], session_start: datetime, limits_from: Tariff) -> PriceResult:
        by_category: dict[str, Price] = {}
        items: list[PriceLine | StepAdjustment] = [*self.totals.lines, *self.totals.steps]
        for item in items:
            amount = Price(excl_vat=item.excl_vat, incl_vat=item.incl_vat)
            by_category[item.category] = by_category.get(item.category, Price()) + amount
        subtotal = sum(by_category.values(), Price())
        total = self.apply_limits(subtotal, limits_from)

        def volume(kind: str) -> Decimal:
            return sum((period.volumes.get(kind, ZERO) for period in periods), ZERO)

        total_time = _seconds(self.end - session_start) / _SECONDS_PER_HOUR if self.end > session_start else ZERO

        def price(category: str) -> Price:
            amount = by_category.get(category, Price())
            return Price(excl_vat=self.quantize(amount.excl_vat), incl_vat=self.quantize(amount.incl_vat))

        return PriceResult(
            currency=self.currency or limits_from.currency,
            time_zone=_zone_name(self.zone),
            total_cost=Price(excl_vat=self.quantize(total.excl_vat), incl_vat=self.quantize(total.incl_vat)),
            total_fixed_cost=price("fixed"),
            total_energy=self.quantize(volume("ENERGY")),
            total_energy_cost=price("energy"),
            total_time=self.quantize(total_time),
            total_time_cost=price("time"),
            total_parking_time=self.quantize(volume("PARKING_TIME")),
            total_parking_cost=price("parking"),
            total_reservation_cost=price("reservation"),
            lines=self.totals.lines,
            step_adjustments=self.totals.steps,
            limit_adjustments=self.totals.limits,
            warnings=self.warnings,
        )


def _as_list(tariff: Tariff | Sequence[Tariff]) -> list[Tariff]:
    return [tariff] if isinstance(tariff, Tariff) else list(tariff)


def _price(
    tariffs: list[Tariff],
    charging_periods: Sequence[ChargingPeriod],
    *,
    start: datetime,
    end: datetime,
    zone: tzinfo | None,
    currency: str | None,
    reservation_expired: bool | None,
    places: int | None,
    warnings: list[PriceWarning],
) -> PriceResult:
    if not tariffs:
        raise PricingError("no tariff to price with")
    if places is not None and places < 0:
        raise PricingError("places must be zero or more")
    with localcontext(_CONTEXT):
        session = _Session(
            tariffs,
            charging_periods,
            start=start,
            end=end,
            zone=zone,
            currency=currency,
            reservation_expired=reservation_expired,
            places=places,
            warnings=warnings,
        )
        return session.run()


def price_session(
    tariff: Tariff | Sequence[Tariff],
    charging_periods: Sequence[ChargingPeriod],
    *,
    start: datetime,
    end: datetime,
    time_zone: str | tzinfo | None,
    currency: str | None = None,
    reservation_expired: bool | None = None,
    places: int | None = 4,
) -> PriceResult:
    """Price a session given as charging periods between ``start`` and ``end``.

    ``tariff`` is one Tariff or several; with several, each period's ``tariff_id`` picks one (ADR 0101).
    ``time_zone`` is the location's IANA zone; ``None`` evaluates restrictions in UTC and warns.
    ``reservation_expired`` overrides the inference "reservation periods but no charging means it expired".
    ``places`` is the rounding of the totals (4, the OCPI precision; ``None`` keeps full precision).
    Raises `PricingError` when there is no tariff or the time zone is unknown.
    """
    return _price(
        _as_list(tariff),
        charging_periods,
        start=start,
        end=end,
        zone=_resolve_zone(time_zone),
        currency=currency,
        reservation_expired=reservation_expired,
        places=places,
        warnings=[],
    )


def price_cdr(
    cdr: Cdr,
    tariff: Tariff | Sequence[Tariff] | None = None,
    time_zone: str | tzinfo | None = None,
    *,
    reservation_expired: bool | None = None,
    places: int | None = 4,
) -> PriceResult:
    """Price a CDR with the given tariff(s), or with the CDR's own ``tariffs`` when none is given.

    The time zone is, in order: ``time_zone``; the CDR location's ``time_zone`` if the sender added one; UTC with
    a warning. Raises `PricingError` when there is no tariff at all or ``time_zone`` is unknown.
    """
    tariffs = _as_list(tariff) if tariff is not None else list(cdr.tariffs)
    if not tariffs:
        raise PricingError("the CDR carries no tariffs and none was given")
    warnings: list[PriceWarning] = []
    zone = _resolve_zone(time_zone)
    if zone is None and cdr.cdr_location is not None and cdr.cdr_location.time_zone:
        try:
            zone = ZoneInfo(cdr.cdr_location.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            warnings.append(
                PriceWarning(
                    code="INVALID_TIME_ZONE",
                    message=f"the CDR location's time zone {cdr.cdr_location.time_zone!r} is unknown",
                )
            )
    return _price(
        tariffs,
        cdr.charging_periods,
        start=cdr.start_date_time,
        end=cdr.end_date_time,
        zone=zone,
        currency=cdr.currency,
        reservation_expired=reservation_expired,
        places=places,
        warnings=warnings,
    )
