"""``ocpi-hub clearing run-schedule`` and the progress bars of the long clearing commands, through the real console
script (tests/support/cli.py) against the PostgreSQL test database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncEngine

from clearing.settlement.service import month_bounds
from hub.objects.service import ObjectStore
from hub.platform.clock import FixedClock
from hub.platform.db import create_sessionmaker
from hub.settings import Settings
from tests.clearing.samples import dump
from tests.clearing.test_settlement import make
from tests.support.cli import hub_env, run_cli


def _due_months(first: str, grace: timedelta) -> list[str]:
    """The calendar months from ``first`` whose end plus ``grace`` has passed on the wall clock (what the command,
    which runs on the system clock, closes)."""
    labels, label, now = [], first, datetime.now(UTC)
    while month_bounds(label)[1] + grace <= now:
        labels.append(label)
        end = month_bounds(label)[1]
        label = f"{end.year:04d}-{end.month:02d}"
    return labels


async def test_run_schedule_takes_in_closes_and_export_shows_progress(
    clean_database: AsyncEngine, hub_settings: Settings, tmp_path: Path
) -> None:
    store, sessions = ObjectStore(FixedClock(datetime(2026, 1, 20, tzinfo=UTC))), create_sessionmaker(clean_database)
    async with sessions() as session, session.begin():
        for doc in (make("R1", "4.00"), make("R2", "2.00")):
            await store.store_cdr(session, "NL", "CPO", dump(doc))
    env = hub_env(hub_settings)

    refused = await run_cli("clearing", "run-schedule", env={**env, "HUB_CLEARING_CLOSE_GRACE": "a day"})
    assert refused.code == 1
    assert "HUB_CLEARING_CLOSE_GRACE must be a number of seconds" in refused.stderr

    ran = await run_cli("clearing", "run-schedule", "--json", env=env)
    assert ran.code == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert (result["ran"], result["intake"]["accepted"]) == (True, 2)
    expected = _due_months("2026-01", timedelta(days=1))
    assert [c["period"] for c in result["closed"]] == expected
    assert list(result["closed"][0]["statements"]) == ["NL/CPO|DE/MSP|EUR"]
    assert "taking in stored CDRs" in ran.stderr
    assert "closing 2026-01" in ran.stderr, "each close shows its progress"

    again = await run_cli("clearing", "run-schedule", "--grace", "0", env=env)
    assert again.code == 0, again.stderr
    assert (
        again.stdout.strip()
        == f"taken in: 0 CDRs; closed: {', '.join(_due_months(expected[-1], timedelta(0))[1:]) or 'none'}"
    )

    out = tmp_path / "january.xlsx"
    exported = await run_cli(
        "clearing", "export", "--period", "2026-01", "--format", "xlsx", "--out", str(out), env=env
    )
    assert exported.code == 0, exported.stderr
    assert "exporting 2026-01" in exported.stderr, "the export shows its progress"
    assert "wrote 3 rows" in exported.stderr
    rows = list(load_workbook(out)["settlement"].iter_rows(values_only=True))
    kind = rows[0].index("kind")
    assert [r[kind] for r in rows[1:]] == ["statement", "cdr", "cdr"]
