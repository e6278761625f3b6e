"""Rules on energy and other volumes (clearing notes §1.6 NRG-SUM, NRG-PHYS, NRG-ZERO, NRG-NEG)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Final

from clearing.document import ci_text, number
from clearing.facts import Facts
from clearing.rules.base import Issue, Severity, dimensions, pointer, rule
from clearing.rules.timing import hours

ENERGY_PRECISION: Final = Decimal("0.001")
# oicp-kit's plausibility margin (clearing notes §1.1): energy <= max power x charging time x 1.2.
POWER_MARGIN: Final = Decimal("1.2")
_TIME_DIMENSIONS: Final = ("TIME", "PARKING_TIME", "RESERVATION_TIME")


@rule("CDR020", Severity.WARNING, "negative energy", catalogue="NRG-NEG")
def negative_energy(facts: Facts) -> Iterator[Issue]:
    # OCPI allows negative ENERGY (V2G); an agreement without V2G does not expect it.
    for period_index, dimension_index, kind, volume in dimensions(facts.doc):
        if kind == "ENERGY" and volume < 0:
            yield Issue(
                f"charging period {period_index} has negative ENERGY {volume} kWh (vehicle-to-grid?)",
                pointer("charging_periods", period_index, "dimensions", dimension_index, "volume"),
            )
    total = number(facts.doc.get("total_energy"))
    if total is not None and total < 0:
        yield Issue(f"total_energy is negative ({total} kWh)", "/total_energy")


@rule("CDR021", Severity.WARNING, "total_energy differs from the ENERGY volumes", catalogue="NRG-SUM")
def energy_sum(facts: Facts) -> Iterator[Issue]:
    volumes = [volume for _, _, kind, volume in dimensions(facts.doc) if kind == "ENERGY"]
    total = number(facts.doc.get("total_energy"))
    if total is None:
        return
    summed = sum(volumes, Decimal(0))
    allowed = ENERGY_PRECISION + Decimal("0.0001") * len(volumes)
    if abs(summed - total) > allowed:
        yield Issue(f"total_energy is {total} kWh but the ENERGY volumes add up to {summed} kWh", "/total_energy")


def _connector_power(location: Mapping[str, Any], evse_uid: str, connector_id: str) -> Decimal | None:
    """The connector's maximum power in kW (mod_locations §8.3.3 Connector)."""
    for evse in location.get("evses") or []:
        if not isinstance(evse, dict) or ci_text(evse.get("uid")) != evse_uid:
            continue
        for connector in evse.get("connectors") or []:
            if not isinstance(connector, dict) or ci_text(connector.get("id")) != connector_id:
                continue
            watts = number(connector.get("max_electric_power"))
            if watts is not None and watts > 0:
                return watts / 1000
            volts, amps = number(connector.get("max_voltage")), number(connector.get("max_amperage"))
            if volts is None or amps is None:
                return None
            # max_voltage is line to neutral for AC_3_PHASE (mod_locations Connector), so three phases carry it.
            phases = 3 if connector.get("power_type") == "AC_3_PHASE" else 1
            return volts * amps * phases / 1000
    return None


def _max_power(facts: Facts) -> tuple[Decimal, str] | None:
    store = facts.store
    location = facts.doc.get("cdr_location")
    if store is not None and store.location is not None and isinstance(location, dict):
        evse_uid, connector_id = ci_text(location.get("evse_uid")), ci_text(location.get("connector_id"))
        if evse_uid is not None and connector_id is not None:
            power = _connector_power(store.location.doc, evse_uid, connector_id)
            if power is not None:
                return power, "the connector's maximum power"
    readings = [volume for _, _, kind, volume in dimensions(facts.doc) if kind == "MAX_POWER"]
    if readings:
        return max(readings), "the highest MAX_POWER reading"
    return None


@rule("CDR022", Severity.WARNING, "energy implausible for the power and charging time", catalogue="NRG-PHYS")
def energy_physically_possible(facts: Facts) -> Iterator[Issue]:
    energy = number(facts.doc.get("total_energy"))
    view = facts.cdr.view
    if energy is None or energy <= 0 or view is None:
        return
    power = _max_power(facts)
    if power is None:
        return
    kilowatts, source = power
    total_time = number(facts.doc.get("total_time"))
    charging = total_time if total_time is not None else hours(view.end_date_time - view.start_date_time)
    charging -= number(facts.doc.get("total_parking_time")) or Decimal(0)
    limit = max(kilowatts * max(charging, Decimal(0)) * POWER_MARGIN, Decimal(0))
    if energy > limit + ENERGY_PRECISION:
        yield Issue(
            f"{energy} kWh in {charging} h of charging exceeds {source} ({kilowatts} kW) x time x {POWER_MARGIN} "
            f"= {limit.quantize(ENERGY_PRECISION)} kWh",
            "/total_energy",
        )


@rule("CDR023", Severity.WARNING, "no energy but a price", catalogue="NRG-ZERO")
def zero_energy_with_price(facts: Facts) -> Iterator[Issue]:
    energy = number(facts.doc.get("total_energy"))
    cost = facts.doc.get("total_cost")
    excl = number(cost.get("excl_vat")) if isinstance(cost, dict) else None
    if facts.cdr.credit or energy is None or excl is None:
        return
    if energy == 0 and excl > 0:
        yield Issue(f"no energy was charged but total_cost is {excl} excl. VAT", "/total_cost/excl_vat")


@rule("CDR024", Severity.ERROR, "negative time", catalogue="TIME-ORDER")
def negative_time(facts: Facts) -> Iterator[Issue]:
    for period_index, dimension_index, kind, volume in dimensions(facts.doc):
        if kind in _TIME_DIMENSIONS and volume < 0:
            yield Issue(
                f"charging period {period_index} has a negative {kind} of {volume} h",
                pointer("charging_periods", period_index, "dimensions", dimension_index, "volume"),
            )
    for name in ("total_time", "total_parking_time"):
        value = number(facts.doc.get(name))
        if value is not None and value < 0:
            yield Issue(f"{name} is negative ({value} h)", f"/{name}")
