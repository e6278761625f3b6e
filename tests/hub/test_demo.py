"""``ocpi-hub demo`` end to end (hub + simulated CPOs/eMSPs + clearing in one process) and the simulator's prices."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest

from clearing.pricing import decode_cdr, price_cdr
from hub.sim.platform import ChargeSession, Party, SimCpo
from hub.sim.pricing import session_cost
from tests.support.cli import run_cli

pytestmark = pytest.mark.embedded

D = Decimal


def _env() -> dict[str, str]:
    # The demo makes its own settings; stray HUB_* variables of the test run must not matter either way.
    return {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}


@pytest.mark.slow
async def test_demo_registers_roams_and_clears() -> None:
    began = time.monotonic()
    args = ("demo", "--cpos", "2", "--emsps", "2", "--sessions", "6", "--mismatch-every", "2", "--json")
    result = await run_cli(*args, env=_env(), timeout=60)
    assert result.code == 0, result.stderr[-2000:]
    assert time.monotonic() - began < 60
    summary = json.loads(result.stdout)

    platforms = summary["platforms"]
    assert sorted((p["party"], p["role"]) for p in platforms) == [
        ("BE/CP2", "CPO"), ("DE/MS1", "EMSP"), ("NL/CP1", "CPO"), ("NL/MS2", "EMSP"),
    ]  # fmt: skip
    assert all(p["registered"] for p in platforms)

    sessions, cdrs, intake = summary["sessions"], summary["cdrs"], summary["intake"]
    assert (sessions["requested"], sessions["completed"], sessions["failed"]) == (6, 6, 0), sessions["errors"]
    assert (cdrs["sent"], cdrs["received"]) == (6, 6), "every CDR reached its eMSP through the hub"
    assert cdrs["wrong_price"] >= 1
    assert (intake["seen"], intake["accepted"]) == (6, 6)
    assert intake["pricing"].get("mismatch") == cdrs["wrong_price"], "clearing catches exactly the wrong prices"
    assert intake["pricing"].get("within_tolerance") == 6 - cdrs["wrong_price"]
    # Only a wrong total draws validation findings: the simulated sessions are otherwise plausible.
    assert intake["validation"].get("ok") == 6 - cdrs["wrong_price"], intake["validation"]

    assert summary["period"]["state"] == "closed"
    statements = summary["statements"]
    assert statements
    assert sum(s["cdr_count"] for s in statements) == 6
    assert {s["cpo"] for s in statements} <= {"NL/CP1", "BE/CP2"}
    [positions] = summary["net_positions"].values()
    fees = sum(D(s["fees_cpo"]) + D(s["fees_emsp"]) for s in statements)
    assert sum(D(v) for v in positions.values()) == -fees, "net positions after fees sum to minus the hub's fees"
    assert all(D(positions[emsp]) < 0 for emsp in ("DE/MS1", "NL/MS2") if emsp in positions), "eMSPs pay"
    assert summary["admin_url"].endswith("/admin/api")
    assert summary["admin_key"]
    assert summary["dashboard_url"] == summary["hub_url"] + "/ui/"


@pytest.mark.slow
async def test_demo_prints_tables() -> None:
    result = await run_cli("demo", "--cpos", "1", "--emsps", "1", "--sessions", "2", env=_env(), timeout=60)
    assert result.code == 0, result.stderr[-2000:]
    for text in ("Platforms registered with the hub", "Sessions: 2 of 2 completed", "Statements", "Net positions"):
        assert text in result.stdout
    assert "Admin API: http://127.0.0.1:" in result.stdout
    # Rich wraps long lines to the terminal width: any whitespace may separate the words.
    assert re.search(r"Dashboard: http://127\.0\.0\.1:\d+/ui/\s+\(sign\s+in\s+with\s+the\s+key\s+\S+\)", result.stdout)


@pytest.mark.parametrize("kwh", ["0.01", "7.77", "12.345", "22.5", "45.00"])
def test_simulated_cdr_price_matches_the_pricing_engine(kwh: str) -> None:
    start = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    cpo = SimCpo(Party("NL", "CP1", "CPO", "Demo CPO 1"), day_start=start)
    session = ChargeSession(
        "S1", ("DE", "MS1"), {"country_code": "DE", "party_id": "MS1", "uid": "U1", "type": "RFID",
                              "contract_id": "DE-MS1-C1"}, cpo.location_id(), "CP1-EVSE1", start, "REF1",
    )  # fmt: skip
    doc = cpo.cdr(session, D(kwh), start + timedelta(minutes=75))
    computed = price_cdr(decode_cdr(msgspec.json.encode(doc)))
    cent = D("0.01")
    for name in ("total_cost", "total_fixed_cost", "total_energy_cost"):
        mine = doc[name]
        theirs = getattr(computed, name)
        assert (mine["excl_vat"], mine["incl_vat"]) == (theirs.excl_vat.quantize(cent), theirs.incl_vat.quantize(cent))
    assert doc["total_cost"] == session_cost(D(kwh))["total_cost"]
    wrong = cpo.cdr(session, D(kwh), start + timedelta(minutes=75), wrong=True)
    assert wrong["total_cost"]["excl_vat"] - doc["total_cost"]["excl_vat"] == D("0.50")


def test_session_cost_by_hand() -> None:
    # 10 kWh: 0.25 + 3.00 = 3.25 excl. VAT, 3.9325 → 3.93 incl. 21 % VAT.
    assert session_cost(D(10))["total_cost"] == {"excl_vat": D("3.25"), "incl_vat": D("3.93")}
