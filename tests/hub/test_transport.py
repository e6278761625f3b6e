"""Transport rules every OCPI answer follows: the envelope, the id headers, auth failures, sloppy URLs, 3000."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from hub.platform.db import create_engine
from hub.settings import Settings
from tests.peers import PeerPlatform
from tests.support.hub_server import ADMIN_TOKEN, HubServer

Invite = Callable[..., Awaitable[str]]


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers or {}) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing Authorization header"),
        ("Token dW5rbm93bg==", "unknown credentials token"),
        ("Bearer whatever", "Authorization must be 'Token <credentials token>'"),
        ("Token", "Authorization must be 'Token <credentials token>'"),
    ],
)
async def test_missing_or_unknown_token_is_401_with_envelope(
    hub: HubServer, authorization: str | None, reason: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    status, _, body = await _get(hub.versions_url, headers)
    assert status == 401
    assert body["status_code"] == 2000
    assert body["status_message"] == reason
    assert isinstance(body["timestamp"], str)
    assert body["timestamp"].endswith("Z")
    assert "data" not in body


async def test_request_id_is_echoed_and_correlation_id_kept(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        response = await peer.request(
            "GET",
            hub.versions_url,
            token=token_a,
            headers={"X-Request-ID": "req-1", "X-Correlation-ID": "corr-1"},
        )
        assert response.status == 200
        assert response.header("x-request-id") == "req-1"
        assert response.header("x-correlation-id") == "corr-1"
        # Errors carry them too.
        failed = await peer.request(
            "GET", hub.versions_url, token="nope", headers={"X-Request-ID": "req-2", "X-Correlation-ID": "corr-2"}
        )
        assert failed.status == 401
        assert (failed.header("x-request-id"), failed.header("x-correlation-id")) == ("req-2", "corr-2")


async def test_missing_ids_are_generated(hub: HubServer) -> None:
    async with aiohttp.ClientSession() as session, session.get(hub.versions_url) as response:
        assert response.status == 401
        assert len(response.headers["X-Request-ID"]) == 36
        assert len(response.headers["X-Correlation-ID"]) == 36
        assert response.headers["X-Request-ID"] != response.headers["X-Correlation-ID"]


@pytest.mark.parametrize("path", ["/ocpi/versions/", "//ocpi//versions", "/ocpi/2.2.1/", "/ocpi//2.2.1//credentials/"])
async def test_trailing_and_doubled_slashes_are_accepted(hub: HubServer, invite: Invite, path: str) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        response = await peer.request("GET", f"{hub.url}{path}", token=token_a)
        assert response.status == 200
        assert response.status_code == 1000


async def test_version_details_list_both_interfaces_of_every_module(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        versions = await peer.request("GET", hub.versions_url, token=token_a)
        assert versions.data == [{"version": "2.2.1", "url": f"{hub.url}/ocpi/2.2.1"}]
        details = await peer.request("GET", versions.data[0]["url"], token=token_a)
        assert details.data["version"] == "2.2.1"
        endpoints = {(e["identifier"], e["role"]): e["url"] for e in details.data["endpoints"]}
        modules = ["cdrs", "chargingprofiles", "commands", "locations", "sessions", "tariffs", "tokens"]
        expected = {(m, r) for m in modules for r in ("SENDER", "RECEIVER")}
        expected |= {("credentials", "SENDER"), ("hubclientinfo", "SENDER")}
        assert set(endpoints) == expected
        assert all(url.startswith(hub.url) and url.endswith("/") for url in endpoints.values())
        assert len(set(endpoints.values())) == len(endpoints)  # every interface has its own URL


async def test_unknown_ocpi_path_is_404_with_envelope(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        for path in ("/ocpi/2.1.1", "/ocpi/2.2.1/sender/unknownmodule", "/ocpi/nothing"):
            response = await peer.request("GET", f"{hub.url}{path}", token=token_a)
            assert response.status == 404, path
            assert response.status_code == 2000
            assert response.envelope is not None
            assert "timestamp" in response.envelope


async def test_unexpected_failure_is_3000_without_a_stack_trace(
    hub_settings: Settings, database_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A hub whose database is gone answers 3000/HTTP 500; the trace goes to the log, not to the partner."""
    missing = make_url(database_url).set(database="hub_test_does_not_exist").render_as_string(hide_password=False)
    engine = create_engine(missing)
    server = HubServer.bind(hub_settings, engine)
    # Start-up would touch the database (admin key), so serve without the lifespan and call a route that needs it.
    await server.start(lifespan=False)
    try:
        status, _, body = await _get(server.versions_url, {"Authorization": "Token dG9rZW4="})
    finally:
        await server.stop()
        await engine.dispose()
    assert status == 500
    assert body["status_code"] == 3000
    assert "does_not_exist" not in str(body)
    log = "".join(capfd.readouterr())
    assert "unhandled error" in log
    assert "InvalidCatalogNameError" in log


async def test_admin_api_lists_parties_for_operators_only(hub: HubServer, invite: Invite) -> None:
    async with PeerPlatform() as peer:
        await peer.register(hub.versions_url, await invite("CPO A"))
    status, _, body = await _get(f"{hub.url}/admin/api/parties", {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200
    assert isinstance(body, list)
    assert body[0]["name"] == "CPO A"
    assert body[0]["parties"][0]["party_id"] == "CPA"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Token {ADMIN_TOKEN}"}):
        status, _, body = await _get(f"{hub.url}/admin/api/parties", headers)
        assert status == 401
        assert "detail" in body


async def test_health_and_openapi(hub: HubServer) -> None:
    assert (await _get(f"{hub.url}/health/live"))[0] == 200
    status, _, body = await _get(f"{hub.url}/health/ready")
    assert (status, body) == (200, {"status": "ok"})
    status, _, schema = await _get(f"{hub.url}/schema/openapi.json")
    assert status == 200
    assert "/admin/api/parties" in schema["paths"]


async def test_metrics_count_routed_requests_and_platforms(hub: HubServer, invite: Invite) -> None:
    async with PeerPlatform() as peer:
        await peer.register(hub.versions_url, await invite("CPO A"))
        answer = await peer.request("GET", f"{hub.url}/ocpi/2.2.1/sender/locations", headers={})
        assert answer.status == 200
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert 'ocpi_hub_requests_total{module="locations",http_status="200",ocpi_status="4001"} 1' in text
    assert 'ocpi_hub_platforms{status="CONNECTED"} 1' in text
    assert "ocpi_hub_message_log_dropped_total 0" in text
    assert "ocpi_hub_message_log_batches_total " in text
    assert "ocpi_hub_stored_writes_total 0" in text, "a GET stores nothing"
