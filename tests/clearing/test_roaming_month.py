"""Issue #4's "done when", end to end: a month of CDRs produced by roaming through the hub closes into statements that
balance, with explanations for every price difference, exports that open in a spreadsheet, and disputes that end in
credits.

The real hub (PostgreSQL, no Redis: its own process runs the clearing schedule on a timer) and four real partner
platforms registered through the credentials handshake (``tests.routing.world``). CPOs broadcast their locations and
tariffs, eMSPs their tokens; for each session the CPO PUTs the Session and POSTs the CDR to the eMSP through the hub.
Time is the hub's injected clock, moved by the test: the schedule takes the stored CDRs in and closes January only
once its end plus HUB_CLEARING_CLOSE_GRACE has passed. Finance works through the admin API only.
"""

from __future__ import annotations

import asyncio
import copy
import io
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from clearing.models import ClearingCdrRow
from clearing.settlement.exports import EXPORT_COLUMNS
from hub.platform.clock import FixedClock
from hub.settings import Settings
from tests.clearing import samples
from tests.conftest import InviteOn
from tests.hub.test_clearing_api import API, _call, _key, _raw
from tests.peers import PeerPlatform, PeerResponse
from tests.routing.world import (
    AUTHORIZE_TIMEOUT,
    CPA,
    CPB,
    EMA,
    EMB,
    FORWARD_TIMEOUT,
    HUB,
    RECEIVER,
    PartyKey,
    World,
    build_world,
    until,
)
from tests.support.hub_server import HubServer

pytestmark = pytest.mark.slow

D = Decimal
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
PAIRS: tuple[tuple[PartyKey, PartyKey], ...] = ((CPA, EMA), (CPA, EMB), (CPB, EMA), (CPB, EMB))
SESSIONS_PER_PAIR = 6
PRICE = D("0.25")  # per kWh, excl. VAT: the CPOs' tariff
WRONG = ("NL", "CPA", "CDR-NL-CPA-DE-EMA-3")  # states 1.00 more than its tariff gives
DISPUTED = ("BE", "CPB", "CDR-BE-CPB-FR-EMB-2")


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _tariff(cpo: PartyKey) -> dict[str, Any]:
    return samples.tariff("T1", price=str(PRICE), country_code=cpo[0], party_id=cpo[1])


def _evse_id(cpo: PartyKey) -> str:
    return f"{cpo[0]}*{cpo[1]}*E1"


def _location(cpo: PartyKey) -> dict[str, Any]:
    doc = samples.location(country_code=cpo[0], party_id=cpo[1])
    doc["evses"][0]["evse_id"] = _evse_id(cpo)
    return doc


def _token_fields(emsp: PartyKey) -> dict[str, str]:
    return {
        "country_code": emsp[0],
        "party_id": emsp[1],
        "uid": f"TOK{emsp[1]}",
        "contract_id": f"{emsp[0]}-{emsp[1]}-C0001",
    }


def _token(emsp: PartyKey) -> dict[str, Any]:
    return samples.token(**_token_fields(emsp), issuer=emsp[1])


def _session(cpo: PartyKey, emsp: PartyKey, sid: str, start: datetime, kwh: Decimal) -> dict[str, Any]:
    end = start + timedelta(hours=1)
    return samples.charging_session(
        country_code=cpo[0], party_id=cpo[1], id=sid, start_date_time=_at(start), end_date_time=_at(end), kwh=kwh,
        cdr_token=samples.cdr_token(**_token_fields(emsp)), last_updated=_at(end),
    )  # fmt: skip


def _cdr(  # noqa: PLR0917 - one CDR
    cpo: PartyKey, emsp: PartyKey, cdr_id: str, sid: str, start: datetime, kwh: Decimal, amount: Decimal
) -> Any:
    end = start + timedelta(hours=1)
    doc = samples.cdr(
        cdr_id, country_code=cpo[0], party_id=cpo[1], session_id=sid, start_date_time=_at(start),
        end_date_time=_at(end), cdr_token=samples.cdr_token(**_token_fields(emsp)), tariffs=[_tariff(cpo)],
        total_cost=samples.price(str(amount)), total_energy_cost=samples.price(str(amount)), total_energy=kwh,
        last_updated=_at(end + timedelta(minutes=5)),
    )  # fmt: skip
    doc["cdr_location"]["evse_id"] = _evse_id(cpo)
    doc["charging_periods"][0]["start_date_time"] = _at(start)
    doc["charging_periods"][0]["dimensions"][0]["volume"] = kwh
    return doc


def _ok(answer: PeerResponse, what: str) -> None:
    assert (answer.status, answer.status_code) in ((200, 1000), (201, 1000)), (what, answer.status, answer.body)


@pytest.fixture
async def roaming(clean_database: AsyncEngine, hub_settings: Settings, invite_on: InviteOn) -> AsyncIterator[World]:
    """The world of ``tests.routing.world`` around a hub whose clock the test moves and whose schedule runs fast."""
    clock = FixedClock(JAN_1)
    settings = msgspec.structs.replace(
        hub_settings, forward_timeout=FORWARD_TIMEOUT, authorize_timeout=AUTHORIZE_TIMEOUT, clearing_interval=0.2,
        clearing_close_grace=86400.0,
    )  # fmt: skip
    hub = HubServer.bind(settings, clean_database, clock=clock)
    await hub.start()
    started: list[PeerPlatform] = []
    try:
        yield await build_world(hub, invite_on, started)
    finally:
        for peer in started:
            await peer.stop()
        await hub.stop()
    assert [error for peer in started for error in peer.errors] == []


def _clock(world: World) -> FixedClock:
    clock = world.hub.clock
    assert isinstance(clock, FixedClock)
    return clock


def _move(world: World, to: datetime) -> None:
    clock = _clock(world)
    clock.advance(to - clock.now())


def _peer(world: World, party: PartyKey) -> PeerPlatform:
    return {CPA: world.cpo_a, CPB: world.cpo_b, EMA: world.emsp_a, EMB: world.emsp_b}[party]


async def _records(world: World) -> int:
    async with world.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(ClearingCdrRow)) or 0)


async def _period_state(world: World, label: str) -> str | None:
    status, periods = await _call("GET", f"{world.hub.url}{API}/periods")
    assert status == 200
    return next((p["state"] for p in periods if p["label"] == label), None)


async def _statements(world: World, label: str) -> list[dict[str, Any]]:
    status, statements = await _call("GET", f"{world.hub.url}{API}/periods/{label}/statements")
    assert status == 200, statements
    return list(statements)


def _check_balance(statements: list[dict[str, Any]], netting: dict[str, Any]) -> None:
    """Each statement adds up; net positions are what the statements say, sum to zero, and to minus the hub's fees
    once fees are taken off."""
    expected: dict[str, Decimal] = defaultdict(Decimal)
    fees = D(0)
    for st in statements:
        included = [D(str(li["amount_incl_vat"])) for li in st["lines"] if li["kind"] == "cdr" and li["included"]]
        adjustments = [D(str(li["amount_incl_vat"])) for li in st["lines"] if li["kind"] == "adjustment"]
        assert D(str(st["payable"])) == sum(included, D(0)) + sum(adjustments, D(0)), st
        assert st["cdr_count"] == len(included)
        expected[st["cpo"]] += D(str(st["payable"]))
        expected[st["emsp"]] -= D(str(st["payable"]))
        fees += D(str(st["fees_cpo"])) + D(str(st["fees_emsp"]))
    multilateral = {party: D(str(v)) for party, v in netting["multilateral"]["EUR"].items()}
    assert multilateral == dict(expected)
    assert sum(multilateral.values(), D(0)) == 0
    after_fees = [D(str(v)) for v in netting["multilateral_after_fees"]["EUR"].values()]
    assert sum(after_fees, D(0)) == -fees == -D(str(netting["hub_fees"]["EUR"]))
    assert fees > 0


async def test_a_month_of_roaming_closes_into_balanced_statements_with_explanations_exports_and_credits(
    roaming: World,
) -> None:
    world, hub = roaming, roaming.hub
    finance = await _key(hub, "fin", "finance")

    # Commercial terms for every pair, as finance records them (approval window 0: CDRs settle at the close).
    for index, (cpo, emsp) in enumerate(PAIRS):
        fees = {"per_session": {"rate": 0.10, "payer": "cpo"}, "percent": {"rate": 1 + index, "payer": "emsp"}}
        terms = {"cpo": "/".join(cpo), "emsp": "/".join(emsp), "valid_from": "2026-01-01T00:00:00Z",
                 "currency": "EUR", "approval_window_days": 0, "fees": fees}  # fmt: skip
        assert (await _call("POST", f"{hub.url}{API}/terms", json_body=terms, headers=finance))[0] == 201

    # Broadcasts: locations and tariffs from the CPOs, tokens from the eMSPs (stored by the hub for clearing).
    for cpo in (CPA, CPB):
        peer, tail = _peer(world, cpo), "/".join(cpo)
        answer = await world.call(
            peer, "PUT", RECEIVER, "tariffs", f"{tail}/T1", frm=cpo, to=HUB, body=samples.dump(_tariff(cpo))
        )
        _ok(answer, "tariff")
        answer = await world.call(
            peer, "PUT", RECEIVER, "locations", f"{tail}/LOC1", frm=cpo, to=HUB, body=samples.dump(_location(cpo))
        )
        _ok(answer, "location")
    for emsp in (EMA, EMB):
        tail = f"{emsp[0]}/{emsp[1]}/TOK{emsp[1]}?type=RFID"
        answer = await world.call(
            _peer(world, emsp), "PUT", RECEIVER, "tokens", tail, frm=emsp, to=HUB, body=samples.dump(_token(emsp))
        )
        _ok(answer, "token")
    await world.settle()

    # January: every pair charges six times; the hub's clock follows the sessions.
    sent: list[tuple[datetime, PartyKey, PartyKey, int]] = []
    for pair_index, (cpo, emsp) in enumerate(PAIRS):
        for n in range(1, SESSIONS_PER_PAIR + 1):
            sent.append((JAN_1 + timedelta(days=4 * n + pair_index - 2, hours=10), cpo, emsp, n))
    documents: dict[str, dict[str, Any]] = {}
    for start, cpo, emsp, n in sorted(sent):
        kwh = D(10 + n + len(documents) % 3)
        amount = kwh * PRICE
        cdr_id = f"CDR-{cpo[0]}-{cpo[1]}-{emsp[0]}-{emsp[1]}-{n}"
        if (cpo[0], cpo[1], cdr_id) == WRONG:
            amount += 1
        sid = f"S-{cdr_id}"
        _move(world, start + timedelta(hours=1, minutes=5))
        peer = _peer(world, cpo)
        session = _session(cpo, emsp, sid, start, kwh)
        tail = f"{cpo[0]}/{cpo[1]}/{sid}"
        _ok(
            await world.call(peer, "PUT", RECEIVER, "sessions", tail, frm=cpo, to=emsp, body=samples.dump(session)),
            "session",
        )
        documents[cdr_id] = _cdr(cpo, emsp, cdr_id, sid, start, kwh, amount)
        _ok(
            await world.call(peer, "POST", RECEIVER, "cdrs", frm=cpo, to=emsp, body=samples.dump(documents[cdr_id])),
            "cdr",
        )
    total = len(PAIRS) * SESSIONS_PER_PAIR
    assert sum(1 for r in world.emsp_a.received + world.emsp_b.received if r.module == "cdrs") == total

    # The schedule takes the stored CDRs in by itself; January stays open until its end plus the grace.
    _move(world, datetime(2026, 1, 31, 23, 0, tzinfo=UTC))
    await until(lambda: _wait_for(world, total), timeout=20, what=f"{total} CDRs taken into clearing")
    assert await _period_state(world, "2026-01") is None

    # The eMSP of the disputed CDR contests it before the close: it is held out of January.
    body = {"country_code": DISPUTED[0], "party_id": DISPUTED[1], "cdr_id": DISPUTED[2], "reason": "energy too high"}
    status, opened = await _call("POST", f"{hub.url}{API}/disputes", json_body=body, headers=finance)
    assert status == 201, opened

    _move(world, datetime(2026, 2, 1, 23, 59, tzinfo=UTC))
    await _quiet(world)
    assert await _period_state(world, "2026-01") is None, "not before the grace has passed"
    _move(world, datetime(2026, 2, 2, 0, 0, tzinfo=UTC))
    await until(lambda: _closed(world, "2026-01"), timeout=20, what="the schedule to close January")

    # Statements balance: lines add up to the payable, net positions sum to zero and to minus the hub's fees.
    status, period = await _call("GET", f"{hub.url}{API}/periods/2026-01")
    assert (status, period["closed_by"]) == (200, "clearing:schedule")
    statements = await _statements(world, "2026-01")
    assert sorted((st["cpo"], st["emsp"]) for st in statements) == sorted(
        ("/".join(cpo), "/".join(emsp)) for cpo, emsp in PAIRS
    )
    _check_balance(statements, period["netting"])

    # Every price difference is explained: one CDR states a wrong price, every other line matches.
    lines = {li["details"]["cdr_id"]: li for st in statements for li in st["lines"] if li["kind"] == "cdr"}
    assert len(lines) == total
    assert {cid for cid, li in lines.items() if li["details"]["verification"] != "matched"} == {WRONG[2]}
    assert lines[WRONG[2]]["details"]["verification"] == "mismatch"
    status, report = await _call("GET", f"{hub.url}{API}/cdrs/{WRONG[0]}/{WRONG[1]}/{WRONG[2]}")
    assert status == 200
    assert report["price"]["outcome"] == "mismatch"
    differences = {d["field"]: D(str(d["difference"])) for d in report["price"]["differences"]}
    assert differences["total_cost.excl_vat"].copy_abs() == 1, differences
    explanation = report["price"]["explanation"]["lines"]
    assert explanation, "the hub's own price is shown line by line"
    assert any(D(str(line.get("volume", 0) or 0)) > 0 for line in explanation), explanation
    # The disputed CDR is listed and held out of January.
    assert (lines[DISPUTED[2]]["included"], lines[DISPUTED[2]]["note"]) == (False, "disputed")

    # The export opens in a spreadsheet with a row per statement and per line.
    status, raw, _ = await _raw("GET", f"{hub.url}{API}/periods/2026-01/export.xlsx")
    assert status == 200
    rows = list(load_workbook(io.BytesIO(raw))["settlement"].iter_rows(values_only=True))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    kind, payable = EXPORT_COLUMNS.index("kind"), EXPORT_COLUMNS.index("payable")
    assert len(rows) - 1 == sum(1 + len(st["lines"]) for st in statements)
    assert sorted(D(str(r[payable])) for r in rows[1:] if r[kind] == "statement") == sorted(
        D(str(st["payable"])) for st in statements
    )
    assert sum(1 for r in rows[1:] if r[kind] == "cdr") == total

    # February: the CPO credits the disputed CDR through the hub; the dispute ends in that credit.
    cpo, emsp = (DISPUTED[0], DISPUTED[1]), EMB
    _move(world, datetime(2026, 2, 10, 12, 0, tzinfo=UTC))
    credit = samples.credit_of(copy.deepcopy(documents[DISPUTED[2]]), f"{DISPUTED[2]}-CREDIT")
    credit["total_energy_cost"] = credit["total_cost"]
    credit["last_updated"] = _at(datetime(2026, 2, 10, 11, 0, tzinfo=UTC))
    _ok(
        await world.call(world.cpo_b, "POST", RECEIVER, "cdrs", frm=cpo, to=emsp, body=samples.dump(credit)),
        "credit cdr",
    )
    start = datetime(2026, 2, 9, 10, 0, tzinfo=UTC)
    fresh = _cdr(cpo, emsp, "CDR-FEB-1", "S-FEB-1", start, D(20), D(20) * PRICE)
    _ok(await world.call(world.cpo_b, "PUT", RECEIVER, "sessions", "BE/CPB/S-FEB-1", frm=cpo, to=emsp,
                         body=samples.dump(_session(cpo, emsp, "S-FEB-1", start, D(20)))), "session")  # fmt: skip
    _ok(await world.call(world.cpo_b, "POST", RECEIVER, "cdrs", frm=cpo, to=emsp, body=samples.dump(fresh)), "cdr")
    await until(lambda: _wait_for(world, total + 2), timeout=20, what="the credit CDR taken into clearing")
    resolve = {"resolution": "credit", "reason": "the CPO credited the session"}
    status, resolved = await _call(
        "POST", f"{hub.url}{API}/disputes/{opened['dispute_id']}/resolve", json_body=resolve, headers=finance
    )
    assert (status, resolved["state"]) == (200, "credited"), resolved

    _move(world, datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    await until(lambda: _closed(world, "2026-02"), timeout=20, what="the schedule to close February")
    february = await _statements(world, "2026-02")
    status, period = await _call("GET", f"{hub.url}{API}/periods/2026-02")
    _check_balance(february, period["netting"])
    [statement] = [st for st in february if (st["cpo"], st["emsp"]) == ("BE/CPB", "FR/EMB")]
    cdr_lines = {li["details"]["cdr_id"]: li for li in statement["lines"] if li["kind"] == "cdr"}
    assert set(cdr_lines) == {DISPUTED[2], f"{DISPUTED[2]}-CREDIT", "CDR-FEB-1"}
    assert all(li["included"] for li in cdr_lines.values())
    original, offset = cdr_lines[DISPUTED[2]], cdr_lines[f"{DISPUTED[2]}-CREDIT"]
    assert D(str(original["amount_incl_vat"])) + D(str(offset["amount_incl_vat"])) == 0, "the credit offsets it"
    assert D(str(statement["payable"])) == D(20) * PRICE
    status, disputes = await _call("GET", f"{hub.url}{API}/disputes")
    assert [(d["cdr"], d["state"]) for d in disputes] == [("/".join(DISPUTED), "credited")]


async def _wait_for(world: World, count: int) -> bool:
    return await _records(world) >= count


async def _closed(world: World, label: str) -> bool:
    return await _period_state(world, label) == "closed"


async def _quiet(world: World) -> None:
    """Let the schedule (every 0.2 s) run a few times at the current clock."""
    await asyncio.sleep(1.0)
    await world.settle()
