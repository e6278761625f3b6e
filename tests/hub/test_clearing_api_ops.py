"""The clearing admin API beyond reading (ADR 0210): terms, CDR intake uploads, period list and close, XLSX export,
with operator keys of each role, against the real hub on loopback and PostgreSQL."""

from __future__ import annotations

import io
import json

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from clearing.models import ClearingCdrRow
from clearing.schedule import CLOSE_LOCK, ClearingLock
from clearing.settlement.exports import EXPORT_COLUMNS
from clearing.settlement.service import SettlementService
from hub.objects.service import ObjectStore
from hub.platform.clock import SystemClock
from tests.clearing.samples import dump
from tests.clearing.test_settlement import make
from tests.hub.test_clearing_api import API, _call, _key, _raw
from tests.support.hub_server import HubServer

TERMS = {
    "cpo": "nl/cpo",
    "emsp": "DE/MSP",
    "valid_from": "2026-01-01T00:00:00Z",
    "currency": "eur",
    "approval_window_days": 0,
    "fees": {"per_session": {"rate": 0.10, "payer": "cpo"}, "percent": {"rate": 1, "payer": "emsp"}},
}


async def _audit(hub: HubServer, target: str) -> list[tuple[str, str]]:
    status, rows = await _call("GET", f"{hub.url}/admin/api/audit?target={target}")
    assert status == 200
    return [(row["action"], row["actor"]) for row in rows]


async def test_terms_create_list_get_in_force_and_refusals(hub: HubServer) -> None:
    viewer, finance = await _key(hub, "vera", "viewer"), await _key(hub, "fin", "finance")
    url = f"{hub.url}{API}/terms"
    assert (await _call("POST", url, json_body=TERMS, headers={}))[0] == 401
    assert (await _call("POST", url, json_body=TERMS, headers=viewer))[0] == 403
    for bad, why in (
        ("{", "not JSON"),
        (dump({**TERMS, "tip": 1}), "unknown field"),
        (dump({**TERMS, "fees": {"tip": {"rate": 1, "payer": "cpo"}}}), "unknown fee"),
        (dump({**TERMS, "fees": {"per_session": {"rate": 1, "payer": "hub"}}}), "payer"),
        (dump({**TERMS, "fees": {"per_session": {"rate": -1, "payer": "cpo"}}}), "negative"),
        (dump({**TERMS, "cpo": "NLCPO"}), "COUNTRY_CODE/PARTY_ID"),
        (dump({**TERMS, "currency": "EURO"}), "ISO 4217"),
        (dump({k: v for k, v in TERMS.items() if k != "valid_from"}), "valid_from"),
    ):
        status, answer = await _call("POST", url, data=bad, headers=finance)
        assert (status, why in answer["detail"]) == (400, True), (why, answer)

    status, created = await _call("POST", url, json_body=TERMS, headers=finance)
    assert status == 201, created
    assert (created["cpo"], created["currency"], created["replaced"]) == ("NL/CPO", "EUR", False)
    assert created["fees"]["per_session"] == {"rate": 0.1, "payer": "cpo"}, "rates are JSON numbers"
    later = {**TERMS, "valid_from": "2026-03-01T00:00:00", "fees": {}}
    status, second = await _call("POST", url, json_body=later)
    assert (status, second["valid_from"]) == (201, "2026-03-01T00:00:00Z"), "a time without zone is UTC"
    await _call("POST", url, json_body={**TERMS, "cpo": "BE/CPB"}, headers=finance)

    status, listed = await _call("GET", url, headers=viewer)
    assert status == 200
    assert [(t["id"], t["cpo"], t["valid_from"][:10]) for t in listed] == [
        (3, "BE/CPB", "2026-01-01"), (created["id"], "NL/CPO", "2026-01-01"), (second["id"], "NL/CPO", "2026-03-01"),
    ]  # fmt: skip
    status, mine = await _call("GET", f"{url}?cpo=nl/cpo&emsp=DE/MSP", headers=viewer)
    assert [t["id"] for t in mine] == [created["id"], second["id"]]
    assert (await _call("GET", f"{url}?cpo=NL"))[0] == 400

    status, one = await _call("GET", f"{url}/{created['id']}", headers=viewer)
    assert (status, one["id"], one["fees"]["percent"]["payer"]) == (200, created["id"], "emsp")
    assert (await _call("GET", f"{url}/999"))[0] == 404
    status, in_force = await _call("GET", f"{url}/NL/CPO/DE/MSP?at=2026-02-15T00:00:00Z", headers=viewer)
    assert (status, in_force["id"]) == (200, created["id"])
    status, current = await _call("GET", f"{url}/nl/cpo/de/msp", headers=viewer)
    assert (status, current["id"]) == (200, second["id"]), "without at: the version in force now"
    status, none = await _call("GET", f"{url}/NL/CPO/DE/MSP?at=2025-06-01T00:00:00Z")
    assert (status, "settles with the defaults" in none["detail"]) == (404, True)
    assert (await _call("GET", f"{url}/NL/CPO/DE/MSP?at=yesterday"))[0] == 400

    replacing = {**TERMS, "approval_window_days": 3}
    status, replaced = await _call("POST", url, json_body=replacing, headers=finance)
    assert (status, replaced["id"], replaced["replaced"], replaced["approval_window_days"]) == (
        201, created["id"], True, 3
    )  # fmt: skip
    assert await _audit(hub, f"terms:{created['id']}") == [("clearing.terms.set", "fin"), ("clearing.terms.set", "fin")]


async def test_intake_uploads_json_and_ndjson_in_batches_with_a_result_per_cdr(hub: HubServer) -> None:
    viewer, finance = await _key(hub, "vera", "viewer"), await _key(hub, "fin", "finance")
    url = f"{hub.url}{API}/cdrs"
    batch = [make("U1", "4.00"), make("U2", "2.00")]
    assert (await _call("POST", url, data=dump(batch), headers=viewer))[0] == 403
    assert (await _call("POST", url, data=dump(batch), headers={}))[0] == 401
    status, answer = await _call("POST", url, data=b"", headers=finance)
    assert (status, "empty" in answer["detail"]) == (400, True)
    status, answer = await _call("POST", url, data=b"[{not json", headers=finance)
    assert (status, "detail" in answer) == (400, True)
    status, answer = await _call("POST", url, data=dump(batch[0]) + b"\n" + dump(batch[1]), headers=finance)
    assert (status, "application/x-ndjson" in answer["detail"]) == (400, True), "NDJSON sent as JSON: say so"
    assert (await _call("POST", f"{url}?results=some", data=dump(batch)))[0] == 400
    assert (await _call("POST", f"{url}?batch_size=0", data=dump(batch)))[0] == 400

    status, taken = await _call("POST", url, data=dump(batch), headers=finance)
    assert status == 200, taken
    assert [(r["status"], r["cdr"]) for r in taken["results"]] == [("accepted", "NL/CPO/U1"), ("accepted", "NL/CPO/U2")]
    assert (taken["summary"]["seen"], taken["summary"]["accepted"]) == (2, 2)
    status, one = await _call("POST", url, data=dump(make("U3", "1.00")), headers=finance)
    assert [r["status"] for r in one["results"]] == ["accepted"], "a single CDR is an upload too"

    changed = make("U1", "9.00")
    lines = [dump(make("U1", "4.00")), dump(changed), b'{"id": "broken"}', dump(make("U4", "3.00")), b""]
    ndjson = b"\n".join(lines) + b"\n"
    headers = {**finance, "Content-Type": "application/x-ndjson"}
    status, mixed = await _call("POST", f"{url}?batch_size=2", data=ndjson, headers=headers)
    assert status == 200, mixed
    assert [r["status"] for r in mixed["results"]] == ["duplicate", "conflict", "invalid", "accepted"]
    assert "credit CDR" in mixed["results"][1]["message"], "a conflict says how to correct a CDR"
    summary = mixed["summary"]
    assert (summary["seen"], summary["duplicates"], summary["conflicts"], summary["invalid"]) == (4, 1, 1, 1)
    status, refused = await _call("POST", f"{url}?results=refused", data=ndjson, headers=headers)
    assert [r["status"] for r in refused["results"]] == ["conflict", "invalid"]

    async with async_sessionmaker(hub.engine)() as session:
        records = (await session.execute(select(ClearingCdrRow.cdr_id, ClearingCdrRow.source))).all()
    assert sorted(records) == [("U1", "api"), ("U2", "api"), ("U3", "api"), ("U4", "api")]
    audit = await _audit(hub, "clearing:intake")
    # One row per batch: 1 + 1 for the JSON uploads, 2 for the NDJSON upload in batches of 2, 1 for the last one.
    assert audit == [("clearing.intake", "fin")] * 5


@pytest.fixture
async def january(hub: HubServer) -> None:
    await _call("POST", f"{hub.url}{API}/terms", json_body=TERMS)
    status, _ = await _call("POST", f"{hub.url}{API}/cdrs", data=dump([make("A1", "4.00"), make("A2", "2.00")]))
    assert status == 200


async def test_close_list_periods_and_xlsx(hub: HubServer, january: None) -> None:
    viewer, finance = await _key(hub, "vera", "viewer"), await _key(hub, "fin", "finance")
    close = f"{hub.url}{API}/periods/2026-01/close"
    assert (await _call("POST", close, headers=viewer))[0] == 403
    assert (await _call("POST", f"{hub.url}{API}/periods/2026-13/close"))[0] == 400
    assert (await _call("POST", f"{hub.url}{API}/periods/last-month/close"))[0] == 400
    status, answer = await _call("POST", f"{hub.url}{API}/periods/2099-01/close")
    assert (status, "after its end" in answer["detail"]) == (409, True)
    async with ClearingLock(hub.engine, CLOSE_LOCK).hold() as held:
        assert held
        status, answer = await _call("POST", close, headers=finance)
        assert (status, "another close is running" in answer["detail"]) == (409, True)

    status, closed = await _call("POST", close, headers=finance)
    assert status == 200, closed
    assert (closed["period"], closed["state"], closed["already_closed"]) == ("2026-01", "closed", False)
    assert list(closed["statements"]) == ["NL/CPO|DE/MSP|EUR"]
    assert closed["netting"], "the answer carries the netting"
    status, again = await _call("POST", close, headers=finance)
    assert (status, again["already_closed"], again["statements"]) == (200, True, closed["statements"])
    assert await _audit(hub, "period:2026-01") == [("clearing.period.close", "fin")] * 2

    status, periods = await _call("GET", f"{hub.url}{API}/periods", headers=viewer)
    assert status == 200
    assert [(p["label"], p["state"], p["closed_by"], p["closes_at"]) for p in periods] == [
        ("2026-01", "closed", "fin", None)
    ]

    status, body, headers = await _raw(
        "GET", f"{hub.url}{API}/periods/2026-01/export.xlsx?party=DE/MSP", headers=viewer
    )
    assert status == 200
    assert headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert 'filename="settlement-2026-01-DE-MSP.xlsx"' in headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(body))["settlement"]
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert tuple(rows[0]) == EXPORT_COLUMNS
    kind, cdr_id, payable = (
        EXPORT_COLUMNS.index("kind"),
        EXPORT_COLUMNS.index("cdr_id"),
        EXPORT_COLUMNS.index("payable"),
    )
    assert [(r[kind], r[cdr_id]) for r in rows[1:]] == [
        ("statement", None), ("cdr", "A1"), ("cdr", "A2"), ("fee", None), ("fee", None),
    ]  # fmt: skip
    assert rows[1][payable] == 6, "amounts are numbers in the workbook"
    assert (await _raw("GET", f"{hub.url}{API}/periods/2025-01/export.xlsx"))[0] == 404
    assert (await _raw("GET", f"{hub.url}{API}/periods/2026-01/export.xlsx?party=DE"))[0] == 400

    status, replaced = await _call("POST", f"{hub.url}{API}/terms", json_body={**TERMS, "fees": {}}, headers=finance)
    assert (status, "settled closed period 2026-01" in replaced["detail"]) == (409, True)


async def test_a_close_refused_by_an_earlier_open_period_is_409(hub: HubServer, january: None) -> None:
    sessions = async_sessionmaker(hub.engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        await SettlementService(SystemClock()).ensure_period(session, "2025-12")
    status, answer = await _call("POST", f"{hub.url}{API}/periods/2026-01/close")
    assert (status, answer["detail"]) == (409, "close period 2025-12 first: periods close in order")
    assert (await _call("POST", f"{hub.url}{API}/periods/2025-12/close"))[0] == 200
    assert (await _call("POST", f"{hub.url}{API}/periods/2026-01/close"))[0] == 200


async def test_the_new_routes_are_in_the_openapi_schema(hub: HubServer) -> None:
    status, body, _ = await _raw("GET", f"{hub.url}/schema/openapi.json")
    assert status == 200
    paths = json.loads(body)["paths"]
    for path, method in (
        ("/admin/api/clearing/terms", "post"),
        ("/admin/api/clearing/terms", "get"),
        ("/admin/api/clearing/terms/{terms_id}", "get"),
        ("/admin/api/clearing/terms/{cpo_cc}/{cpo_pid}/{emsp_cc}/{emsp_pid}", "get"),
        ("/admin/api/clearing/cdrs", "post"),
        ("/admin/api/clearing/periods", "get"),
        ("/admin/api/clearing/periods/{label}/close", "post"),
        ("/admin/api/clearing/periods/{label}/export.xlsx", "get"),
        ("/admin/api/clearing/periods/{label}/rates", "get"),
        ("/admin/api/clearing/periods/{label}/rates", "post"),
        ("/admin/api/clearing/sync", "post"),
        ("/admin/api/clearing/schedule", "get"),
    ):
        assert method in paths.get(path, {}), path


async def test_terms_carry_the_vat_regime_and_conversion(hub: HubServer) -> None:
    url = f"{hub.url}{API}/terms"
    domestic = {**TERMS, "vat_regime": "domestic", "vat_rate": 21, "settlement_currency": "eur", "rate_source": "ECB"}
    status, created = await _call("POST", url, json_body=domestic)
    assert status == 201, created
    assert (created["vat_regime"], created["vat_rate"], created["rate_source"]) == ("domestic", 21, "ECB")
    status, answer = await _call("POST", url, json_body={**TERMS, "vat_regime": "none"})
    assert (status, "VAT regime" in answer["detail"]) == (400, True)
    status, answer = await _call("POST", url, json_body={**TERMS, "vat_regime": "domestic"})
    assert (status, "domestic VAT needs a rate" in answer["detail"]) == (400, True)


async def test_reference_rates_per_period(hub: HubServer, january: None) -> None:
    viewer, finance = await _key(hub, "vera", "viewer"), await _key(hub, "fin", "finance")
    url = f"{hub.url}{API}/periods/2026-01/rates"
    rate = {"base": "usd", "quote": "EUR", "rate": 0.92, "rate_date": "2026-01-31", "source": "ECB"}
    assert (await _call("GET", url))[0] == 404, "no period 2026-01 yet"
    assert (await _call("POST", url, json_body=rate, headers=viewer))[0] == 403
    for bad, why in (
        ({**rate, "rate": -1}, "positive"),
        ({**rate, "quote": "USD"}, "two different currencies"),
        ({**rate, "base": "DOLLAR"}, "ISO 4217"),
        ({**rate, "rate_date": "end of January"}, "date"),
        ({**rate, "fx": 1}, "fx"),
    ):
        status, answer = await _call("POST", url, json_body=bad, headers=finance)
        assert (status, why in answer["detail"]) == (400, True), (why, answer)
    assert (await _call("POST", f"{hub.url}{API}/periods/january/rates", json_body=rate))[0] == 400
    status, fixed = await _call("POST", url, json_body=rate, headers=finance)
    assert status == 201, fixed
    assert (fixed["base"], fixed["quote"], fixed["rate"], fixed["set_by"]) == ("USD", "EUR", 0.92, "fin")
    status, listed = await _call("GET", url, headers=viewer)
    assert (status, [(r["base"], r["rate_date"]) for r in listed]) == (200, [("USD", "2026-01-31")])
    assert await _audit(hub, "period:2026-01") == [("clearing.rate.set", "fin")]
    assert (await _call("POST", f"{hub.url}{API}/periods/2026-01/close"))[0] == 200
    status, answer = await _call("POST", url, json_body={**rate, "rate": 0.9}, headers=finance)
    assert (status, "fixed" in answer["detail"]) == (409, True)


async def test_sync_takes_in_what_the_hub_stored(hub: HubServer) -> None:
    viewer, finance = await _key(hub, "vera", "viewer"), await _key(hub, "fin", "finance")
    store, sessions = ObjectStore(SystemClock()), async_sessionmaker(hub.engine)
    async with sessions() as session, session.begin():
        for doc in (make("S1"), make("S2"), make("S3")):
            await store.store_cdr(session, "NL", "CPO", dump(doc))
    url = f"{hub.url}{API}/sync"
    assert (await _call("POST", url, headers=viewer))[0] == 403
    assert (await _call("POST", f"{url}?limit=0", headers=finance))[0] == 400
    status, first = await _call("POST", f"{url}?limit=2", headers=finance)
    assert (status, first["seen"], first["accepted"]) == (200, 2, 2)
    status, rest = await _call("POST", url, headers=finance)
    assert (status, rest["seen"], rest["accepted"]) == (200, 1, 1)
    assert (await _call("POST", url, headers=finance))[1]["seen"] == 0, "nothing is taken in twice"
    assert await _audit(hub, "clearing:intake") == [("clearing.sync", "fin")] * 3


async def test_the_schedule_says_what_is_due(hub: HubServer, january: None) -> None:
    viewer = await _key(hub, "vera", "viewer")
    assert (await _call("GET", f"{hub.url}{API}/schedule", headers={}))[0] == 401
    status, schedule = await _call("GET", f"{hub.url}{API}/schedule", headers=viewer)
    assert status == 200
    assert (schedule["runs"], schedule["interval_seconds"], schedule["close_grace_seconds"]) == (
        "in-process timer", 3600.0, 86400.0
    )  # fmt: skip
    assert schedule["due"][0] == "2026-01", "January's CDRs make January (and the months after it) due"
    assert (await _call("POST", f"{hub.url}{API}/periods/2026-01/close"))[0] == 200
    status, schedule = await _call("GET", f"{hub.url}{API}/schedule", headers=viewer)
    assert "2026-01" not in schedule["due"]
