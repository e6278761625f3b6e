"""The dashboard over plain HTTP against the real hub: sign-in, the session cookie, CSRF, roles, every page with
real data, bad input answered with an HTML error page (never a 500), and the downloads."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]

from clearing.settlement.exports import EXPORT_COLUMNS
from hub.admin import actions
from hub.admin.service import CLI_ACTOR, list_operator_keys, operator_key_as_dict
from hub.runtime import build_runtime
from hub.ui.session import COOKIE, SessionSigner
from tests.support.hub_server import ADMIN_TOKEN, HubServer
from tests.ui.conftest import CORRELATION_ID, PERIOD, World, operator_key

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """A minimal cookie-keeping client (aiohttp's jar refuses cookies from IP addresses), no redirects followed."""

    def __init__(self, hub: HubServer) -> None:
        self.hub = hub
        self.cookie: str | None = None

    async def request(
        self, method: str, path: str, *, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, Any]:
        sent = dict(headers or {})
        if self.cookie is not None:
            sent["Cookie"] = f"{COOKIE}={self.cookie}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.hub.url + path, data=data, headers=sent, allow_redirects=False) as response,
        ):
            body = await response.read()
            for value in response.headers.getall("Set-Cookie", []):
                if value.startswith(f"{COOKIE}="):
                    # Clearing the cookie sends it empty (Litestar quotes it: "").
                    self.cookie = value.split(";", 1)[0].split("=", 1)[1].strip('"') or None
            text = body.decode("utf-8", "replace") if not response.content_type.endswith("sheet") else ""
            return response.status, text, (response.headers, body)

    async def get(self, path: str) -> tuple[int, str]:
        status, text, _ = await self.request("GET", path)
        return status, text

    async def login(self, key: str) -> tuple[int, Any]:
        status, _, (headers, _) = await self.request("POST", "/ui/login", data={"key": key, "next": "/ui/"})
        return status, headers

    async def csrf(self) -> str:
        _, page = await self.get("/ui/")
        found = CSRF.search(page)
        assert found, "every signed-in page carries the CSRF token in its sign-out form"
        return found.group(1)


async def test_sign_in_sets_a_strict_http_only_session_and_sign_out_ends_it(hub: HubServer) -> None:
    browser = Browser(hub)
    status, _text, (headers, _) = await browser.request("GET", "/ui/parties?q=x")
    assert (status, headers["Location"]) == (303, "/ui/login?next=/ui/parties%3Fq%3Dx")
    status, page = await browser.get("/ui/login")
    assert status == 200
    assert 'type="password"' in page

    status, _ = await browser.login("not-a-key")
    assert status == 401
    assert browser.cookie is None
    status, headers = await browser.login(ADMIN_TOKEN)
    assert (status, headers["Location"]) == (303, "/ui/")
    cookie = headers["Set-Cookie"]
    assert ADMIN_TOKEN not in cookie, "the key never goes into the cookie"
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower(), "plain HTTP on loopback: a Secure cookie would never come back"

    status, page = await browser.get("/ui/")
    assert status == 200
    assert "HUB_ADMIN_TOKEN" in page
    assert ">admin<" in page
    status, _, (headers, _) = await browser.request("GET", "/ui/")
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert (headers["X-Frame-Options"], headers["Cache-Control"]) == ("DENY", "no-store")

    token = await browser.csrf()
    status, _, (headers, _) = await browser.request("POST", "/ui/logout", data={"csrf": token})
    assert (status, headers["Location"]) == (303, "/ui/login")
    assert browser.cookie is None
    assert (await browser.get("/ui/"))[0] == 303


async def test_a_forged_expired_or_revoked_session_is_not_accepted(hub: HubServer) -> None:
    browser = Browser(hub)
    await browser.login(ADMIN_TOKEN)
    assert browser.cookie is not None
    key_id, expires, nonce, mac = browser.cookie.split(".")
    for forged in (f"2.{expires}.{nonce}.{mac}", f"{key_id}.{int(expires) + 3600}.{nonce}.{mac}", "junk", ""):
        browser.cookie = forged
        assert (await browser.get("/ui/"))[0] == 303, forged
    signer = SessionSigner(hub.settings.secret_key)
    browser.cookie = signer.issue(int(key_id), datetime.now(UTC) - timedelta(hours=9))
    assert (await browser.get("/ui/"))[0] == 303, "expired"
    browser.cookie = SessionSigner("another-secret").issue(int(key_id), datetime.now(UTC))
    assert (await browser.get("/ui/"))[0] == 303, "signed with another key"

    viewer = Browser(hub)
    key = await operator_key(hub, "vera", "viewer")
    await viewer.login(key)
    assert (await viewer.get("/ui/"))[0] == 200
    runtime = build_runtime(hub.settings, engine=hub.engine)
    try:
        [row] = [k for k in await _keys(runtime) if k["name"] == "vera"]
        await actions.operator_revoke(runtime, CLI_ACTOR, int(str(row["id"])))
    finally:
        await runtime.client.close()
    assert (await viewer.get("/ui/"))[0] == 303, "revoking the key ends its dashboard sessions"


async def _keys(runtime: Any) -> list[dict[str, object]]:
    async with runtime.sessions() as session:
        return [operator_key_as_dict(k) for k in await list_operator_keys(session)]


async def test_forms_need_the_csrf_token_and_the_hub_origin(hub: HubServer) -> None:
    browser = Browser(hub)
    await browser.login(ADMIN_TOKEN)
    token = await browser.csrf()
    assert (await browser.request("POST", "/ui/deliveries/retry", data={}))[0] == 403
    assert (await browser.request("POST", "/ui/deliveries/retry", data={"csrf": token + "x"}))[0] == 403
    evil = {"Origin": "https://evil.example"}
    assert (await browser.request("POST", "/ui/deliveries/retry", data={"csrf": token}, headers=evil))[0] == 403
    status, _, (headers, _) = await browser.request("POST", "/ui/deliveries/retry", data={"csrf": token})
    assert (status, headers["Location"]) == (303, "/ui/deliveries?status=failed&queued=0")
    status, _, _ = await Browser(hub).request("POST", "/ui/login", data={"key": ADMIN_TOKEN}, headers=evil)
    assert status == 403, "no sign-in from another site's form (login CSRF)"
    away = {"key": ADMIN_TOKEN, "next": "https://evil.example/"}
    status, _, (headers, _) = await Browser(hub).request("POST", "/ui/login", data=away)
    assert headers["Location"] == "/ui/", "no open redirect after sign-in"


async def test_viewer_reads_everything_but_cannot_act(world: World) -> None:
    hub = world.hub
    viewer = Browser(hub)
    await viewer.login(await operator_key(hub, "vera", "viewer"))
    token = await viewer.csrf()
    status, page = await viewer.get("/ui/deliveries?status=failed")
    assert status == 200
    assert "failed" in page
    assert "Re-deliver" not in page
    assert (await viewer.request("POST", "/ui/deliveries/retry", data={"csrf": token}))[0] == 403
    status, page = await viewer.get(f"/ui/parties/{world.emsp_platform_id}")
    assert status == 200
    assert "Suspend" not in page
    assert (await viewer.request("POST", f"/ui/parties/{world.emsp_platform_id}/suspend", data={"csrf": token}))[
        0
    ] == 403
    status, page = await viewer.get("/ui/clearing/cdrs/NL/CPA/M1")
    assert status == 200
    assert "Open dispute" not in page
    path = "/ui/clearing/cdrs/NL/CPA/M1/dispute"
    assert (await viewer.request("POST", path, data={"csrf": token, "reason": "x"}))[0] == 403

    finance = Browser(hub)
    await finance.login(await operator_key(hub, "fin", "finance"))
    token = await finance.csrf()
    assert (await finance.request("POST", "/ui/deliveries/retry", data={"csrf": token}))[0] == 403
    status, _, (headers, _) = await finance.request("POST", path, data={"csrf": token, "reason": "meter reading"})
    assert (status, headers["Location"]) == (303, "/ui/clearing/cdrs/NL/CPA/M1?done=dispute")
    status, page = await finance.get("/ui/clearing/disputes?state=open")
    assert status == 200
    assert "NL/CPA/M1" in page
    assert "meter reading" in page
    assert "fin" in page


async def test_every_page_shows_real_data(world: World) -> None:
    hub = world.hub
    admin = Browser(hub)
    await admin.login(ADMIN_TOKEN)
    status, page = await admin.get("/ui/")
    assert status == 200
    assert re.search(r'id="failed-deliveries">\s*[1-9]', page), "the failed broadcast is counted"
    statuses = page.split('id="party-statuses"', 1)[1].split("</ul>", 1)[0]
    # The eMSP went OFFLINE when its pushes failed and comes back once it answers again: either way, two parties.
    assert sum(int(n) for n in re.findall(r"<strong>(\d+)</strong>", statuses)) == 2, statuses
    assert "CONNECTED" in statuses
    assert "<svg" in page
    assert "Requests into the hub per minute" in page
    assert "locations" in page
    assert f"/ui/clearing/periods/{PERIOD}" in page, "the latest period, from the overview"
    assert (await admin.get("/ui/?minutes=60"))[0] == 200
    assert (await admin.get("/ui"))[0] == 200, "/ui and /ui/ are the same page (the hub ignores trailing slashes)"

    status, page = await admin.get("/ui/parties?q=ema")
    table = page.split('id="parties"', 1)[-1]
    assert status == 200
    assert "DE/EMA" in table
    assert "NL/CPA" not in table
    status, page = await admin.get(f"/ui/parties/{world.cpo_platform_id}")
    assert status == 200
    assert "cdrs" in page
    assert world.cpo.base_url in page
    assert CORRELATION_ID in page

    status, page = await admin.get(f"/ui/messages/trace?id={CORRELATION_ID}")
    assert status == 200
    assert page.index("→ in") < page.index("out →"), "the inbound request comes first, then the call it caused"
    assert "/NL/CPA/LOC1" in page
    status, page = await admin.get("/ui/messages?party=de/ema&module=locations")
    assert status == 200
    assert CORRELATION_ID in page

    status, page = await admin.get("/ui/deliveries")
    assert status == 200
    assert "Re-deliver" in page
    assert "locations/NL/CPA/LOC1" in page

    status, page = await admin.get("/ui/clearing")
    assert status == 200
    assert PERIOD in page
    assert "M1" in page
    assert "mismatch" in page
    status, page = await admin.get(f"/ui/clearing/periods/{PERIOD}?party=DE/EMA")
    assert status == 200
    assert "Net positions after fees, EUR" in page
    assert re.search(r"\+[\d.,]+ EUR receives", page)
    assert re.search("\u2212[\\d.,]+ EUR pays", page), "a real minus sign"
    status, page = await admin.get("/ui/clearing/cdrs/NL/CPA/M1")
    assert status == 200
    assert 'id="breakdown"' in page, "the pricing breakdown lines"
    assert "ENERGY" in page
    assert 'id="differences"' in page
    assert "total_cost" in page
    assert 'id="findings"' in page
    status, page = await admin.get("/ui/clearing/cdrs/NL/CPA/A1")
    assert status == 200
    assert "recomputed now" in page, "a matched CDR's breakdown is recomputed for display"
    assert 'id="breakdown"' in page

    status, page = await admin.get("/ui/downloads")
    assert status == 200
    assert f"/ui/downloads/{PERIOD}/statements.csv?party=DE/EMA" in page


async def test_downloads_are_the_clearing_export(world: World) -> None:
    admin = Browser(world.hub)
    await admin.login(ADMIN_TOKEN)
    status, text, (headers, _) = await admin.request("GET", f"/ui/downloads/{PERIOD}/statements.csv?party=NL/CPA")
    assert status == 200
    assert headers["Content-Disposition"] == f'attachment; filename="settlement-{PERIOD}-NL-CPA.csv"'
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [(r["kind"], r["cdr_id"]) for r in rows if r["kind"] in ("statement", "cdr")][:2] == [
        ("statement", ""), ("cdr", "A1"),
    ]  # fmt: skip
    status, _, (headers, body) = await admin.request("GET", f"/ui/downloads/{PERIOD}/statements.xlsx")
    assert status == 200
    assert body[:2] == b"PK"
    sheet = load_workbook(io.BytesIO(body))["settlement"]
    assert tuple(c.value for c in next(sheet.iter_rows(max_row=1))) == EXPORT_COLUMNS
    assert (await Browser(world.hub).get(f"/ui/downloads/{PERIOD}/statements.csv"))[0] == 303, "needs a session"


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/ui/?minutes=7", 400, "minutes must be one of 10, 30, 60"),
        ("/ui/?minutes=x", 400, "minutes must be a whole number"),
        ("/ui/messages?ocpi_status=abc", 400, "ocpi_status must be a whole number"),
        ("/ui/messages?since=yesterday", 400, "since must be a date and time"),
        ("/ui/messages/trace", 400, "a correlation id is required"),
        ("/ui/messages/trace?id=nope", 404, "no message with correlation id"),
        ("/ui/parties/999", 404, "no platform with id 999"),
        ("/ui/deliveries?status=lost", 400, "status must be one of"),
        ("/ui/clearing?party=NLCPA", 400, "is not COUNTRY_CODE/PARTY_ID"),
        ("/ui/clearing?pricing=cheap", 400, "pricing must be one of"),
        ("/ui/clearing/periods/1999-01", 404, "no period 1999-01"),
        ("/ui/clearing/cdrs/NL/CPA/NOPE", 404, "NOPE"),
        ("/ui/clearing/disputes?state=odd", 400, "state must be one of"),
        ("/ui/downloads/1999-01/statements.csv", 404, "no period"),
        ("/ui/downloads/..%2Fetc/statements.csv", 404, ""),
        ("/ui/static/../../settings.py", 404, ""),
        ("/ui/no/such/page", 404, "no page /ui/no/such/page"),
    ],
)
async def test_bad_input_is_a_clear_error_page(hub: HubServer, path: str, status: int, text: str) -> None:
    admin = Browser(hub)
    await admin.login(ADMIN_TOKEN)
    got, page = await admin.get(path)
    assert got == status, page[:500]
    assert text in page


async def test_the_stylesheet_is_served_and_cached(hub: HubServer) -> None:
    status, text, (headers, _) = await Browser(hub).request("GET", "/ui/static/ui.css")
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert ":root" in text
    etag = headers["ETag"]
    status, _, _ = await Browser(hub).request("GET", "/ui/static/ui.css", headers={"If-None-Match": etag})
    assert status == 304
