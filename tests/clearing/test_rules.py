"""Every validation rule with a failing and a passing example (pure: the store facts are built by hand).

The baseline world of `tests.clearing.samples` passes every rule. Each case changes the CDR and/or what matching
found so that exactly the rule under test must fire, and names a passing variant (the baseline unless given).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from clearing.document import parse_cdr
from clearing.facts import Facts, KnownCdr, StoredObject, StoreFacts
from clearing.matching import StoredTariff, connector_tariff_ids, known_from, resolve_tariffs
from clearing.pricing import tariff_from_builtins
from clearing.rules import RULES, Finding, Rule, Severity, run_rules, validation_state
from tests.clearing.samples import (
    NOW,
    D,
    cdr,
    charging_session,
    credit_of,
    dump,
    location,
    price,
    tariff,
    token,
)

Doc = dict[str, Any]


@dataclass
class World:
    """A CDR and what matching found for it; ``store=None`` is a pre-flight without the store."""

    doc: Doc
    store: StoreFacts | None
    versions: dict[str, Doc]


def baseline(*, with_store: bool = True) -> World:
    store = StoreFacts(
        session=StoredObject(1, charging_session()),
        token=StoredObject(1, token(), datetime(2025, 12, 1, tzinfo=UTC)),
        location=StoredObject(1, location()),
    )
    return World(cdr(), store if with_store else None, {"T1": tariff()})


def findings(world: World) -> list[Finding]:
    parsed = parse_cdr(dump(world.doc))
    if world.store is None:
        resolution = resolve_tariffs(parsed)
    else:
        stored = {
            key.upper(): StoredTariff(doc, tariff_from_builtins(doc), datetime(2025, 12, 1, tzinfo=UTC))
            for key, doc in world.versions.items()
        }
        location_ = world.store.location
        connector = connector_tariff_ids(location_.doc, "EVSE1", "1") if location_ is not None else []
        resolution = resolve_tariffs(parsed, lookup=stored.get, connector_tariffs=connector)
    facts = Facts(cdr=parsed, now=NOW, tolerance=D("0.01"), tariffs=resolution, store=world.store)
    return run_rules(facts)


def codes(world: World) -> set[str]:
    return {finding.code for finding in findings(world)}


# --- mutations ----------------------------------------------------------------------------------------------------


def set_(**fields: Any) -> Callable[[World], None]:
    def change(world: World) -> None:
        world.doc.update(copy.deepcopy(fields))

    return change


def period(**fields: Any) -> Callable[[World], None]:
    def change(world: World) -> None:
        world.doc["charging_periods"][0].update(fields)

    return change


def dims(*pairs: tuple[str, str]) -> Callable[[World], None]:
    def change(world: World) -> None:
        world.doc["charging_periods"][0]["dimensions"] = [{"type": t, "volume": D(v)} for t, v in pairs]

    return change


def stored(**fields: Any) -> Callable[[World], None]:
    def change(world: World) -> None:
        assert world.store is not None
        world.store = replace(world.store, **fields)

    return change


def session_field(**fields: Any) -> Callable[[World], None]:
    return stored(session=StoredObject(1, charging_session(**fields)))


def token_field(last_updated: datetime | None = None, **fields: Any) -> Callable[[World], None]:
    return stored(token=StoredObject(1, token(**fields), last_updated or datetime(2025, 12, 1, tzinfo=UTC)))


def both(*changes: Callable[[World], None]) -> Callable[[World], None]:
    def change(world: World) -> None:
        for item in changes:
            item(world)

    return change


def other_cdr(cdr_id: str = "CDR0", **fields: Any) -> KnownCdr:
    return known_from(parse_cdr(dump(cdr(cdr_id, **fields))), 7)


def as_credit(original: Doc | None = None, **fields: Any) -> Callable[[World], None]:
    """Turn the world's CDR into the credit CDR of ``original`` (default: the baseline CDR), which is known."""

    def change(world: World) -> None:
        source = original or cdr("CDR0")
        world.doc = credit_of(source, "CDR0-C", **fields)
        if world.store is not None:
            known = known_from(parse_cdr(dump(source)), 7)
            world.store = replace(world.store, original=known)

    return change


def no_tariffs(world: World) -> None:
    world.doc["tariffs"] = []
    world.doc["charging_periods"][0].pop("tariff_id")


def signed(*natures: str, public_key: str | None = "MIIB") -> Callable[[World], None]:
    data: Doc = {
        "encoding_method": "OCMF",
        "signed_values": [{"nature": n, "plain_data": "OCMF|{}", "signed_data": "c2ln"} for n in natures],
    }
    if public_key:
        data["public_key"] = public_key
    return set_(signed_data=data)


def pure(change: Callable[[World], None]) -> Callable[[World], None]:
    """The same change, checked without the store (a pre-flight)."""

    def apply(world: World) -> None:
        world.store = None
        change(world)

    return apply


def nothing(world: World) -> None:
    del world


def two_periods(first_tariff: str | None, second_tariff: str | None) -> Callable[[World], None]:
    def change(world: World) -> None:
        periods = []
        for start, tariff_id in (("2026-01-01T10:00:00Z", first_tariff), ("2026-01-01T10:30:00Z", second_tariff)):
            entry: Doc = {"start_date_time": start, "dimensions": [{"type": "ENERGY", "volume": D(8)}]}
            if tariff_id:
                entry["tariff_id"] = tariff_id
            periods.append(entry)
        world.doc["charging_periods"] = periods

    return change


# --- the cases: (code, failing change, passing change) ------------------------------------------------------------

CASES: list[tuple[str, Callable[[World], None], Callable[[World], None]]] = [
    ("CDR001", set_(cdr_location={**cdr()["cdr_location"], "id": 5}), nothing),
    ("CDR010", set_(end_date_time="2026-01-01T09:00:00Z"), nothing),
    ("CDR011", period(start_date_time="2026-01-01T09:59:00Z"), period(start_date_time="2026-01-01T10:00:00Z")),
    ("CDR011", both(two_periods("T1", "T1"), lambda w: w.doc["charging_periods"].reverse()), two_periods("T1", "T1")),
    ("CDR012", set_(last_updated="2026-02-01T08:06:00Z"), set_(last_updated="2026-02-01T08:04:00Z")),
    ("CDR013", set_(start_date_time="1970-01-01T00:00:00Z"), nothing),
    ("CDR014", set_(total_time=D("1.5")), set_(total_time=D("1.0000"))),
    (
        "CDR015",
        dims(("ENERGY", "16"), ("TIME", "1.5")),
        dims(("ENERGY", "16"), ("TIME", "0.75"), ("PARKING_TIME", "0.25")),
    ),
    ("CDR015", dims(("ENERGY", "16"), ("TIME", "0.5")), dims(("ENERGY", "16"), ("TIME", "1"))),
    (
        "CDR016",
        both(set_(total_parking_time=D("1.5")), dims(("ENERGY", "16"), ("PARKING_TIME", "1.5"))),
        both(set_(total_parking_time=D("0.5")), dims(("ENERGY", "16"), ("TIME", "0.5"), ("PARKING_TIME", "0.5"))),
    ),
    (
        "CDR017",
        set_(total_parking_time=D("0.25")),
        both(set_(total_parking_time=D("0.25")), dims(("ENERGY", "16"), ("TIME", "0.75"), ("PARKING_TIME", "0.25"))),
    ),
    ("CDR020", dims(("ENERGY", "-1"), ("TIME", "1")), nothing),
    ("CDR021", set_(total_energy=D("16.5")), set_(total_energy=D("16.0004"))),
    (
        "CDR022",
        both(set_(total_energy=D("30")), dims(("ENERGY", "30"), ("TIME", "1"))),
        both(set_(total_energy=D("26")), dims(("ENERGY", "26"), ("TIME", "1"))),
    ),
    (
        "CDR022",
        pure(both(set_(total_energy=D("16")), dims(("ENERGY", "16"), ("TIME", "1"), ("MAX_POWER", "11")))),
        pure(both(set_(total_energy=D("16")), dims(("ENERGY", "16"), ("TIME", "1"), ("MAX_POWER", "22")))),
    ),
    (
        "CDR023",
        both(set_(total_energy=D("0")), dims(("ENERGY", "0"), ("TIME", "1"))),
        both(
            set_(total_energy=D("0"), total_cost=price("0"), total_energy_cost=price("0")),
            dims(("ENERGY", "0"), ("TIME", "1")),
        ),
    ),
    ("CDR024", dims(("ENERGY", "16"), ("TIME", "-1")), nothing),
    ("CDR030", set_(currency="EUX"), nothing),
    ("CDR030", set_(currency="XXX"), set_(currency="eur")),
    ("CDR031", set_(currency="USD"), nothing),
    ("CDR032", set_(total_cost=price("5.00")), set_(total_cost=price("4.005"))),
    ("CDR032", as_credit(total_cost=price("-5.00")), as_credit()),
    (
        "CDR032",
        set_(total_cost=price("5.00")),
        both(
            set_(total_cost=price("5.00"), tariffs=[tariff(min_price=price("5.00"))]),
            lambda w: w.versions.update(T1=tariff(min_price=price("5.00"))),
        ),
    ),
    ("CDR033", set_(total_cost=price("4.00", "3.99")), set_(total_cost=price("4.00", "4.84"))),
    ("CDR034", set_(total_energy_cost=price("-4.00")), nothing),
    ("CDR040", stored(same_session=(other_cdr(),)), both(stored(same_session=(other_cdr(),)), as_credit())),
    ("CDR041", stored(look_alikes=(other_cdr("CDR9", session_id="S9"),)), nothing),
    ("CDR050", lambda w: w.doc.pop("session_id"), nothing),
    ("CDR051", stored(session=None), nothing),
    ("CDR052", session_field(status="ACTIVE"), session_field(status="COMPLETED")),
    ("CDR053", session_field(location_id="LOC2"), session_field(location_id="loc1")),
    ("CDR053", session_field(cdr_token={**charging_session()["cdr_token"], "uid": "OTHER"}), nothing),
    (
        "CDR054",
        session_field(start_date_time="2026-01-01T10:05:00Z"),
        session_field(start_date_time="2026-01-01T10:00:30Z"),
    ),
    ("CDR060", stored(token=None), both(stored(token=None), set_(auth_method="AUTH_REQUEST"))),
    ("CDR061", token_field(valid=False), token_field(valid=False, last_updated=datetime(2026, 1, 15, tzinfo=UTC))),
    ("CDR062", token_field(valid=False, last_updated=datetime(2026, 1, 15, tzinfo=UTC)), token_field(valid=False)),
    ("CDR063", token_field(whitelist="NEVER"), both(token_field(whitelist="NEVER"), set_(auth_method="AUTH_REQUEST"))),
    ("CDR064", token_field(contract_id="DE-MSP-C9999"), token_field(contract_id="de-msp-c0001")),
    ("CDR065", both(stored(token=None), set_(auth_method="COMMAND")), nothing),
    ("CDR070", stored(location=None), nothing),
    ("CDR071", set_(cdr_location={**cdr()["cdr_location"], "evse_uid": "EVSE9"}), nothing),
    ("CDR071", set_(cdr_location={**cdr()["cdr_location"], "connector_id": "9"}), nothing),
    ("CDR072", stored(location=StoredObject(1, location(publish=False))), nothing),
    ("CDR080", pure(no_tariffs), pure(nothing)),
    ("CDR080", both(no_tariffs, stored(location=None)), no_tariffs),  # the connector's tariff_ids come from the store
    ("CDR081", pure(period(tariff_id="T9")), pure(nothing)),
    ("CDR081", lambda w: w.versions.clear(), nothing),
    (
        "CDR082",
        lambda w: w.versions.update(T1=tariff(price="0.30")),
        lambda w: w.versions.update(T1=tariff(tariff_alt_url="https://cpo.example/t1")),
    ),
    ("CDR083", two_periods("T1", None), two_periods("T1", "T1")),
    ("CDR090", set_(credit=True), nothing),
    ("CDR091", set_(credit=True, credit_reference_id="CDR0"), as_credit()),
    ("CDR091", set_(credit=True, credit_reference_id="CDR1"), as_credit()),
    ("CDR092", as_credit(total_cost=price("-3.00")), as_credit()),
    ("CDR092", as_credit(total_cost=price("4.00")), as_credit(total_cost={"excl_vat": D("-4"), "incl_vat": D("-4.0")})),
    ("CDR093", both(as_credit(), stored(other_credits=(other_cdr("CDR0-X", credit=True),))), as_credit()),
    ("CDR094", as_credit(session_id="S2"), as_credit()),
    ("CDR094", as_credit(end_date_time="2026-01-01T11:30:00Z"), as_credit(end_date_time="2026-01-01T11:00:00.000Z")),
    ("CDR095", set_(credit_reference_id="CDR0"), nothing),
    ("CDR096", as_credit(total_energy=D("10")), as_credit(total_energy_cost=price("-4.00"))),
    ("CDR100", signed("Start", "End", public_key=None), signed("Start", "End")),
    ("CDR101", signed("Start", "End"), nothing),
    ("CDR102", signed("Start"), signed("start", "Intermediate", "END")),
]


def test_the_baseline_has_no_findings_with_and_without_the_store() -> None:
    assert findings(baseline()) == []
    assert findings(baseline(with_store=False)) == []


def test_every_rule_has_a_case() -> None:
    assert {rule.code for rule in RULES} == {code for code, _, _ in CASES}
    assert len(RULES) == len({rule.code for rule in RULES})


@pytest.mark.parametrize(("code", "fail", "passing"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_fails_and_passes(code: str, fail: Callable[[World], None], passing: Callable[[World], None]) -> None:
    failing_world = baseline()
    fail(failing_world)
    found = [finding for finding in findings(failing_world) if finding.code == code]
    assert found, f"{code} did not fire; got {codes(failing_world)}"
    rule = next(item for item in RULES if item.code == code)
    assert all(finding.severity == rule.severity for finding in found)
    assert all(finding.pointer == "" or finding.pointer.startswith("/") for finding in found)
    passing_world = baseline()
    passing(passing_world)
    assert code not in codes(passing_world)


def test_pointers_name_the_offending_field() -> None:
    world = baseline()
    set_(total_cost=price("4.00", "3.99"))(world)
    assert [(f.code, f.pointer) for f in findings(world)] == [("CDR033", "/total_cost/incl_vat")]
    world = baseline()
    set_(cdr_location={**cdr()["cdr_location"], "id": 5})(world)
    assert ("CDR001", "/cdr_location/id") in {(f.code, f.pointer) for f in findings(world)}


def test_store_rules_are_skipped_without_the_store() -> None:
    world = baseline(with_store=False)
    set_(auth_method="WHITELIST")(world)
    found = codes(world)
    assert not found & {rule.code for rule in RULES if rule.needs_store}


def test_validation_state_is_the_worst_severity() -> None:
    def finding(severity: Severity) -> Finding:
        return Finding(code="X", severity=severity, message="m", pointer="")

    assert validation_state([]) == "ok"
    assert validation_state([finding(Severity.INFO)]) == "ok"
    assert validation_state([finding(Severity.INFO), finding(Severity.WARNING)]) == "warning"
    assert validation_state([finding(Severity.WARNING), finding(Severity.ERROR)]) == "error"


def test_a_rule_that_crashes_becomes_a_warning_not_an_exception() -> None:
    def broken(facts: Facts) -> list[Any]:
        raise ZeroDivisionError("boom")

    rule = Rule("CDR999", Severity.ERROR, "broken", "TEST", False, broken)
    world = baseline()
    result = run_rules(
        Facts(cdr=parse_cdr(dump(world.doc)), now=NOW, tolerance=Decimal("0.01")),
        [rule],
    )
    assert [(f.code, f.severity) for f in result] == [("CDR999", "warning")]
    assert "boom" in result[0].message
