"""The admin API beyond parties: agreements, deliveries and the message log, with operator roles."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.peers import PeerConfig, PeerPlatform
from tests.support.hub_server import ADMIN_TOKEN, HubServer

Invite = Callable[..., Awaitable[str]]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _call(method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=json, headers=ADMIN if headers is None else headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_agreements_can_be_added_listed_and_ended(hub: HubServer) -> None:
    status, created = await _call("POST", f"{hub.url}/admin/api/agreements", json={"cpo": "nl/cpa", "emsp": "DE/EMA"})
    assert status == 201
    assert (created["cpo"], created["emsp"], created["active"]) == ("NL/CPA", "DE/EMA", True)
    status, listed = await _call("GET", f"{hub.url}/admin/api/agreements")
    assert status == 200
    assert [a["cpo"] for a in listed] == ["NL/CPA"]
    status, _ = await _call("DELETE", f"{hub.url}/admin/api/agreements/NL/CPA/DE/EMA")
    assert status == 200
    status, listed = await _call("GET", f"{hub.url}/admin/api/agreements")
    assert listed[0]["active"] is False
    status, _ = await _call("DELETE", f"{hub.url}/admin/api/agreements/NL/CPA/DE/EMA")
    assert status == 404


async def test_bad_agreement_input_is_400(hub: HubServer) -> None:
    for body in ({"cpo": "NLCPA", "emsp": "DE/EMA"}, {"cpo": "NL/CPA"}, {"cpo": "NL/CPA", "emsp": "NL/CPA"}):
        status, answer = await _call("POST", f"{hub.url}/admin/api/agreements", json=body)
        assert status == 400, body
        assert "detail" in answer


async def test_writes_need_an_admin_key(hub: HubServer) -> None:
    status, _ = await _call(
        "POST", f"{hub.url}/admin/api/agreements", json={"cpo": "NL/CPA", "emsp": "DE/EMA"}, headers={}
    )
    assert status == 401
    status, _ = await _call(
        "POST", f"{hub.url}/admin/api/deliveries/retry", json={}, headers={"Authorization": "Bearer x"}
    )
    assert status == 401


async def test_message_log_shows_the_path_of_a_correlation_id(hub: HubServer, invite: Invite) -> None:
    async with PeerPlatform() as cpo, PeerPlatform(PeerConfig(roles=[("DE", "EMA", "EMSP", "eMSP A")])) as emsp:
        await cpo.register(hub.versions_url, await invite("cpo"))
        await emsp.register(hub.versions_url, await invite("emsp"))
        answer = await emsp.request(
            "GET",
            "locations",
            "LOC1",
            interface="SENDER",
            headers={"X-Correlation-ID": "trace-me", "OCPI-to-country-code": "NL", "OCPI-to-party-id": "CPA"},
        )
        assert answer.status in (200, 404)
    rows: list[dict[str, Any]] = []
    for _ in range(100):
        status, rows = await _call("GET", f"{hub.url}/admin/api/messages?correlation_id=trace-me")
        assert status == 200
        if len(rows) >= 2:
            break
        await asyncio.sleep(0.05)
    assert [r["direction"] for r in rows] == ["in", "out"]
    assert rows[0]["from"] == "DE/EMA"
    assert rows[0]["to"] == "NL/CPA"
    assert rows[1]["path"].endswith("/LOC1")
    status, failed = await _call("GET", f"{hub.url}/admin/api/deliveries?status=failed")
    assert (status, failed) == (200, [])
    status, queued = await _call("POST", f"{hub.url}/admin/api/deliveries/retry", json={})
    assert (status, queued) == (200, {"queued": 0})


async def test_values_the_database_cannot_hold_are_400_not_500(hub: HubServer) -> None:
    # Found by schemathesis against /schema/openapi.json on PostgreSQL: U+0000 in text, ids beyond integer range.
    for path in (
        "/admin/api/messages?correlation_id=%00",
        "/admin/api/audit?target=a%00b",
        "/admin/api/clearing/cdrs/NL/CPA/%00",
        "/admin/api/clearing/periods/%00/statements",
        "/admin/api/deliveries?status=%00",
        "/admin/api/parties/99999999999",
        "/admin/api/parties/-1",
        "/admin/api/messages?limit=-5",
        "/admin/api/deliveries?platform=99999999999",
        "/admin/api/messages?ocpi_status=10000000000",
        "/admin/api/clearing/terms/99999999999",
    ):
        status, answer = await _call("GET", f"{hub.url}{path}")
        assert status == 400, (path, answer)
        assert answer["status_code"] == 400, path
        assert answer["detail"], path
    status, answer = await _call("POST", f"{hub.url}/admin/api/operators", json={"name": "a\x00b", "role": "viewer"})
    assert status == 400, answer
    status, _ = await _call("POST", f"{hub.url}/admin/api/parties/99999999999/suspend")
    assert status == 400
