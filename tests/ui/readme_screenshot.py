"""Make the README's picture of the dashboard (``docs/img/dashboard.png``) from the demo world.

Runs ``ocpi-hub demo --keep-running --json``, signs in to its dashboard with the key the demo prints, using Debian's
Chromium through Playwright, screenshots the overview and stops the demo::

    .venv/bin/python -m tests.ui.readme_screenshot [docs/img/dashboard.png]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("HUB_UI_CHROMIUM", "/usr/bin/chromium")


def _summary(process: subprocess.Popen[str]) -> dict[str, Any]:
    """The demo's JSON summary, printed once everything is up (it may span many lines)."""
    assert process.stdout is not None
    text = ""
    for line in process.stdout:
        text += line
        try:
            found: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError:
            continue
        return found
    raise SystemExit(f"the demo ended without a summary:\n{text}")


def main(out: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    command = [str(Path(sys.executable).parent / "ocpi-hub"), "demo", "--keep-running", "--json", "--sessions", "60"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        summary = _summary(process)
        with sync_playwright() as playwright:
            args = ["--no-sandbox"] if os.geteuid() == 0 else []
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
            page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
            page.goto(summary["dashboard_url"])
            page.get_by_label("Operator key").fill(summary["admin_key"])
            page.get_by_role("button", name="Sign in").click()
            page.goto(summary["dashboard_url"] + "?minutes=10")
            page.get_by_role("heading", name="Overview").wait_for()
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=out, full_page=True)
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    print(f"wrote {out}")  # noqa: T201 - a command-line tool


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/dashboard.png"))
