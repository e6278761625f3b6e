"""The clearing routes of the admin API (/admin/api/clearing/…) against the real hub on loopback and PostgreSQL.

CDRs are taken in and the period is closed with the clearing services on the hub's own engine, as the settlement
tests do; everything else goes through HTTP with operator keys (admin, finance, viewer).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from clearing.intake import ClearingService
from clearing.settlement.exports import EXPORT_COLUMNS
from clearing.settlement.service import SettlementService
from clearing.settlement.terms import FeeRule, Terms
from hub.admin.service import create_operator_key
from hub.platform.clock import FixedClock
from tests.clearing.samples import NOW, dump, tariff
from tests.clearing.test_settlement import make, take_in
from tests.support.hub_server import ADMIN_TOKEN, HubServer

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
API = "/admin/api/clearing"


async def _raw(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    data: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, json=json_body, data=data, headers=ADMIN if headers is None else headers
        ) as response,
    ):
        return response.status, await response.read(), response.headers


async def _call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    status, body, _ = await _raw(method, url, **kwargs)
    return status, json.loads(body) if body else None


async def _key(hub: HubServer, name: str, role: str) -> dict[str, str]:
    sessions = async_sessionmaker(hub.engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        _, plain = await create_operator_key(session, name=name, role=role, now=NOW)
    return {"Authorization": f"Bearer {plain}"}


@pytest.fixture
async def seeded(hub: HubServer) -> async_sessionmaker[Any]:
    """Terms NL/CPO ↔ DE/MSP (approval window 0, fees) and three January CDRs of 4.00, 2.00 and 1.00."""
    sessions = async_sessionmaker(hub.engine, expire_on_commit=False)
    settlement = SettlementService(FixedClock(NOW))
    fees = {
        "per_session": FeeRule(rate=Decimal("0.10"), payer="cpo"),
        "percent": FeeRule(rate=Decimal(1), payer="emsp"),
    }
    terms = Terms(
        cpo="NL/CPO", emsp="DE/MSP", valid_from=datetime(2026, 1, 1, tzinfo=UTC), currency="EUR",
        approval_window_days=0, fees=fees,
    )  # fmt: skip
    async with sessions() as session, session.begin():
        await settlement.set_terms(session, terms, actor="test")
    async with sessions() as session:
        await take_in(
            session, ClearingService(FixedClock(NOW)), make("A1", "4.00"), make("A2", "2.00"), make("A3", "1.00")
        )
    return sessions


async def test_dispute_close_statements_export_reconcile_resolve(
    hub: HubServer, seeded: async_sessionmaker[Any]
) -> None:
    viewer, finance = await _key(hub, "vera", "viewer"), await _key(hub, "fin", "finance")
    body = {"country_code": "NL", "party_id": "CPO", "cdr_id": "A3", "reason": "energy"}
    assert (await _call("POST", f"{hub.url}{API}/disputes", json_body=body, headers={}))[0] == 401
    assert (await _call("POST", f"{hub.url}{API}/disputes", json_body=body, headers=viewer))[0] == 403
    status, answer = await _call("POST", f"{hub.url}{API}/disputes", json_body={**body, "cdr_id": "NOPE"})
    assert (status, "NOPE" in answer["detail"]) == (404, True)
    assert (await _call("POST", f"{hub.url}{API}/disputes", data="{", headers=finance))[0] == 400
    status, opened = await _call("POST", f"{hub.url}{API}/disputes", json_body=body, headers=finance)
    assert status == 201, opened
    dispute_id = opened["dispute_id"]
    status, answer = await _call("POST", f"{hub.url}{API}/disputes", json_body=body, headers=finance)
    assert (status, "open dispute" in answer["detail"]) == (409, True)
    status, listed = await _call("GET", f"{hub.url}{API}/disputes?state=open", headers=viewer)
    assert (status, [(d["id"], d["cdr"], d["opened_by"]) for d in listed]) == (200, [(dispute_id, "NL/CPO/A3", "fin")])

    assert (await _call("GET", f"{hub.url}{API}/periods/2026-01"))[0] == 404
    await SettlementService(FixedClock(NOW)).close_period(seeded, "2026-01", actor="test")

    status, period = await _call("GET", f"{hub.url}{API}/periods/2026-01", headers=viewer)
    assert status == 200
    assert (period["label"], period["state"]) == ("2026-01", "closed")
    assert period["netting"], "the closed period carries its netting and payment advice"
    status, raw, _ = await _raw("GET", f"{hub.url}{API}/periods/2026-01/statements?party=DE/MSP", headers=viewer)
    assert status == 200
    assert b'"payable":6.00' in raw, "amounts are JSON numbers, not strings"
    [statement] = json.loads(raw)
    assert (statement["cpo"], statement["emsp"], statement["fees_cpo"], statement["fees_emsp"]) == (
        "NL/CPO", "DE/MSP", 0.2, 0.06
    )  # fmt: skip
    cdr_lines = [
        (li["details"]["cdr_id"], li["included"], li["amount_incl_vat"])
        for li in statement["lines"]
        if li["kind"] == "cdr"
    ]
    assert cdr_lines == [("A1", True, 4.0), ("A2", True, 2.0), ("A3", False, 0.0)], "the disputed A3 is held out"
    assert (await _call("GET", f"{hub.url}{API}/periods/2026-01/statements?party=FR/EMP")) == (200, [])
    assert (await _call("GET", f"{hub.url}{API}/periods/2026-01/statements?party=FREMP"))[0] == 400
    assert (await _call("GET", f"{hub.url}{API}/periods/2025-01/statements"))[0] == 404

    status, raw, headers = await _raw("GET", f"{hub.url}{API}/periods/2026-01/export.csv?party=DE/MSP", headers=viewer)
    assert status == 200
    assert headers["content-type"].startswith("text/csv")
    assert headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [(r["kind"], r["cdr_id"], r["amount_incl_vat"]) for r in rows[:3]] == [
        ("statement", "", "6.00"), ("cdr", "A1", "4.00"), ("cdr", "A2", "2.00"),
    ]  # fmt: skip

    url = f"{hub.url}{API}/periods/2026-01/reconcile?party=DE/MSP"
    status, report = await _call("POST", url, data="cdr_id,amount\nA1,4.00\nA2,2.10\nA9,3.00\n", headers=viewer)
    assert status == 200, report
    assert (report["matched"], report["missing_at_hub"], report["missing_at_counterparty"]) == (["A1"], ["A9"], [])
    assert report["amount_differs"] == [{"cdr_id": "A2", "ours": 2.0, "theirs": 2.1, "difference": 0.1}]
    assert (await _call("POST", url, data="id,value\n"))[0] == 400
    assert (await _call("POST", f"{hub.url}{API}/periods/2025-01/reconcile?party=DE/MSP", data="cdr_id,amount\n"))[
        0
    ] == 404

    resolve = f"{hub.url}{API}/disputes/{dispute_id}/resolve"
    adjust = {"resolution": "adjustment", "reason": "meter", "amount": -0.25}
    assert (await _call("POST", resolve, json_body=adjust, headers=viewer))[0] == 403
    assert (await _call("POST", resolve, json_body={"resolution": "refund", "reason": "x"}))[0] == 400
    assert (await _call("POST", resolve, json_body={"resolution": "adjustment", "reason": "x"}))[0] == 400
    assert (await _call("POST", f"{hub.url}{API}/disputes/999/resolve", json_body=adjust))[0] == 404
    status, resolved = await _call("POST", resolve, json_body=adjust, headers=finance)
    assert (status, resolved["state"], resolved["resolved_by"]) == (200, "adjusted", "fin")
    assert (await _call("POST", resolve, json_body=adjust))[0] == 409

    status, shown = await _call("GET", f"{hub.url}{API}/cdrs/NL/CPO/A3", headers=viewer)
    assert status == 200
    assert shown["record"]["cdr_id"] == "A3"
    disputes = [(e["from_state"], e["to_state"], e["actor"]) for e in shown["events"] if e["dimension"] == "dispute"]
    assert disputes == [(None, "open", "fin"), ("open", "adjusted", "fin")]
    status, audit = await _call("GET", f"{hub.url}/admin/api/audit?target=dispute:{dispute_id}")
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("clearing.dispute.resolve", "fin"),
        ("clearing.dispute.open", "fin"),
    ]


async def test_cdr_report_check_and_commercial_decision(hub: HubServer, seeded: async_sessionmaker[Any]) -> None:
    viewer = await _key(hub, "vera", "viewer")
    async with seeded() as session:
        await take_in(session, ClearingService(FixedClock(NOW)), make("M1", "5.00"))
    status, shown = await _call("GET", f"{hub.url}{API}/cdrs/NL/CPO/M1", headers=viewer)
    assert status == 200
    assert {"record", "links", "findings", "price", "events"} <= set(shown)
    assert shown["price"]["outcome"] == "mismatch"
    assert shown["price"]["explanation"]["lines"], "the price check explains itself line by line"
    assert shown["findings"], "findings are listed"
    assert shown["record"]["total_cost_incl_vat"] == 5.0, "amounts are JSON numbers"
    status, answer = await _call("GET", f"{hub.url}{API}/cdrs/NL/CPO/NOPE")
    assert (status, "NOPE" in answer["detail"]) == (404, True)
    assert (await _call("GET", f"{hub.url}{API}/cdrs/NL/CPO/A1", headers={}))[0] == 401

    status, checked = await _call("POST", f"{hub.url}{API}/check", data=dump(make("B1", "4.00")), headers=viewer)
    assert status == 200, checked
    assert checked["price"]["outcome"] == "matched"
    assert isinstance(checked["findings"], list)
    given = {"cdr": make("B1", "4.00"), "tariffs": [tariff(price="0.30")]}
    status, wrapped = await _call("POST", f"{hub.url}{API}/check", data=dump(given))
    assert (status, wrapped["price"]["outcome"], wrapped["price"]["tariff_source"]) == (200, "mismatch", "given")
    assert wrapped["price"]["explanation"]["lines"]
    assert (await _call("GET", f"{hub.url}{API}/cdrs/NL/CPO/B1"))[0] == 404, "a check stores nothing"
    status, answer = await _call("POST", f"{hub.url}{API}/check", data="{not json")
    assert (status, "detail" in answer) == (400, True)

    decide = f"{hub.url}{API}/cdrs/NL/CPO/A1/commercial"
    assert (await _call("POST", decide, json_body={"state": "approved", "reason": "ok"}, headers=viewer))[0] == 403
    status, decided = await _call("POST", decide, json_body={"state": "approved", "reason": "ok"})
    assert (status, decided["record"]["commercial_state"]) == (200, "approved")
    assert decided["events"][-1]["actor"] == "HUB_ADMIN_TOKEN"
    assert (await _call("POST", decide, json_body={"state": "pending", "reason": "undo"}))[0] == 409
    assert (
        await _call(
            "POST", f"{hub.url}{API}/cdrs/NL/CPO/NOPE/commercial", json_body={"state": "approved", "reason": "x"}
        )
    )[0] == 404
