"""The dashboard in a real browser: Playwright drives Debian's Chromium (headless, never a downloaded browser)
against the hub served on loopback with real data, and saves a screenshot of every step.

Set ``HUB_UI_SCREENSHOTS=/some/dir`` to keep the screenshots; otherwise they go to the test's tmp folder. The
browser is ``/usr/bin/chromium`` (``deploy/local/services.sh`` installs the Debian package when it is missing), or
``HUB_UI_CHROMIUM``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from clearing.settlement.exports import EXPORT_COLUMNS
from tests.support.hub_server import ADMIN_TOKEN
from tests.ui.conftest import CORRELATION_ID, PERIOD, World, operator_key

CHROMIUM = os.environ.get("HUB_UI_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium package (make services does)")
    # Chromium refuses to run as root inside its sandbox; the pages are our own, served on loopback.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        await browser.close()


async def _context(browser: Browser, world: World) -> BrowserContext:
    context = await browser.new_context(
        base_url=world.hub.url, accept_downloads=True, viewport={"width": 1360, "height": 900}
    )
    context.set_default_timeout(15_000)
    return context


async def _login(page: Page, key: str) -> None:
    await page.goto("/ui/")
    await expect(page).to_have_url(re.compile(r"/ui/login$"))
    await page.get_by_label("Operator key").fill(key)
    await page.get_by_role("button", name="Sign in").click()


def _section(page: Page, name: str) -> Any:
    return page.get_by_role("navigation", name="Sections").get_by_role("link", name=name, exact=True)


async def test_operator_walks_through_the_dashboard(browser: Browser, world: World, screenshots: Path) -> None:
    context = await _context(browser, world)
    page = await context.new_page()

    # A wrong key is refused and sets no session.
    await _login(page, "certainly-not-a-key")
    await expect(page.get_by_role("alert")).to_contain_text("not a valid operator key")
    await page.screenshot(path=screenshots / "01-login-refused.png")
    assert await context.cookies() == []

    # The admin key opens the overview.
    await page.get_by_label("Operator key").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/ui/$"))
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    [cookie] = await context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert int(await page.locator("#failed-deliveries").inner_text()) >= 1
    await expect(page.locator("#party-statuses")).to_contain_text("CONNECTED")
    chart = page.get_by_role("img", name=re.compile("Requests into the hub per minute"))
    await expect(chart).to_be_visible()
    await expect(page.locator("table.legend")).to_contain_text("locations")
    await page.screenshot(path=screenshots / "02-overview.png", full_page=True)

    # Find a party and open it: its endpoints and recent traffic.
    await _section(page, "Parties").click()
    await page.get_by_label("Find a party").fill("ema")
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("#parties tbody tr")
    await expect(rows).to_have_count(1)
    await rows.get_by_role("link", name="DE/EMA").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("eMSP platform")
    await expect(page.locator("#endpoints")).to_contain_text(world.emsp.base_url)
    await expect(page.locator("#endpoints")).to_contain_text("hubclientinfo")
    await page.screenshot(path=screenshots / "03-party.png", full_page=True)

    # Its recent traffic links to the correlation trace: every hop in order.
    await page.get_by_role("link", name=CORRELATION_ID).first.click()
    await expect(page.locator("#correlation-id")).to_have_text(CORRELATION_ID)
    hops = page.get_by_role("list", name="Hops").locator("li")
    await expect(hops).to_have_count(2)
    await expect(hops.nth(0)).to_contain_text("→ in")
    await expect(hops.nth(0)).to_contain_text("DE/EMA → NL/CPA")
    await expect(hops.nth(1)).to_contain_text("out →")
    await expect(hops.nth(1)).to_contain_text("/NL/CPA/LOC1")
    await page.screenshot(path=screenshots / "04-trace.png", full_page=True)

    # The failed broadcast is re-delivered from the deliveries page.
    await _section(page, "Deliveries").click()
    failed = page.locator("#deliveries tbody tr", has_text="locations/NL/CPA/LOC1")
    await expect(failed).to_have_count(1)
    await page.screenshot(path=screenshots / "05-deliveries.png", full_page=True)
    await failed.get_by_role("button", name="Re-deliver").click()
    await expect(page.get_by_role("status")).to_contain_text("1 delivery put back in line")

    # Clearing: the closed period, its net positions chart, a CDR's explanation.
    await _section(page, "Clearing").click()
    await page.get_by_role("link", name=PERIOD).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(f"Period {PERIOD}")
    positions = page.get_by_role("img", name=re.compile("Net positions after fees in EUR"))
    await expect(positions).to_contain_text("NL/CPA")
    await expect(positions).to_contain_text(re.compile(r"\+[\d.,]+ EUR receives"))
    await expect(positions).to_contain_text(re.compile("\u2212[\\d.,]+ EUR pays"))
    await expect(page.locator("#statements")).to_contain_text("DE/EMA")
    await page.screenshot(path=screenshots / "06-period.png", full_page=True)

    # Download the statement of one counterparty and check what is in it.
    await page.get_by_label("Counterparty").select_option("DE/EMA")
    await page.get_by_role("button", name="Show").click()
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download CSV").click()
    download = await info.value
    assert download.suggested_filename == f"settlement-{PERIOD}-DE-EMA.csv"
    saved = screenshots / download.suggested_filename
    await download.save_as(saved)
    rows_csv = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert tuple(rows_csv[0]) == EXPORT_COLUMNS
    [statement] = [r for r in rows_csv if r["kind"] == "statement"]
    assert (statement["cpo"], statement["emsp"], statement["currency"]) == ("NL/CPA", "DE/EMA", "EUR")
    assert sorted(r["cdr_id"] for r in rows_csv if r["kind"] == "cdr") == ["A1", "A2", "M1"]
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download XLSX").click()
    xlsx = await info.value
    assert xlsx.suggested_filename == f"settlement-{PERIOD}-DE-EMA.xlsx"
    await xlsx.save_as(screenshots / xlsx.suggested_filename)
    workbook = load_workbook(screenshots / xlsx.suggested_filename)
    assert [c.value for c in next(workbook["settlement"].iter_rows(max_row=1))] == list(EXPORT_COLUMNS)

    # The CDR with the wrong price explains itself: differences, pricing lines, findings.
    await _section(page, "Clearing").click()
    await page.get_by_label("CDR id").fill("M1")
    await page.get_by_role("button", name="Search").click()
    await page.locator("#cdrs").get_by_role("link", name="NL/CPA/M1").click()
    await expect(page.locator("#cdr-key")).to_have_text("NL/CPA/M1")
    await expect(page.locator("#price h2")).to_contain_text("mismatch")
    await expect(page.locator("#differences")).to_contain_text("total_cost")
    await expect(page.locator("#breakdown tbody tr").first).to_contain_text("ENERGY")
    await expect(page.locator("#findings tbody tr").first).to_be_visible()
    await page.screenshot(path=screenshots / "07-cdr.png", full_page=True)

    # Signing out ends the session.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/ui/login$"))
    await page.goto("/ui/clearing")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    await context.close()


async def test_a_viewer_cannot_act(browser: Browser, world: World, screenshots: Path) -> None:
    context = await _context(browser, world)
    page = await context.new_page()
    await _login(page, await operator_key(world.hub, "vera", "viewer"))
    await expect(page.locator(".who")).to_contain_text("viewer")
    await page.goto("/ui/deliveries?status=failed")
    await expect(page.locator("#deliveries")).to_contain_text("locations/NL/CPA/LOC1")
    await expect(page.get_by_role("button", name=re.compile("Re-deliver"))).to_have_count(0)
    await page.screenshot(path=screenshots / "08-viewer-deliveries.png", full_page=True)
    await page.goto(f"/ui/parties/{world.emsp_platform_id}")
    await expect(page.get_by_role("button", name="Suspend")).to_have_count(0)

    # A forged form post with the viewer's own session and CSRF token is still refused: the role decides.
    token = await page.locator('input[name="csrf"]').first.get_attribute("value")
    assert token
    answer = await context.request.post("/ui/deliveries/retry", form={"csrf": token}, max_redirects=0)
    assert answer.status == 403
    assert "may not do this" in await answer.text()
    answer = await context.request.post(
        f"/ui/parties/{world.emsp_platform_id}/suspend", form={"csrf": token}, max_redirects=0
    )
    assert answer.status == 403
    await context.close()
