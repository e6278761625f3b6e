"""The pre-flight check (pure and with the store) and the ``ocpi-hub clearing`` intake commands: check, import,
sync and show, run through click's CliRunner against the test databases (HUB_DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from clearing.checks import check_cdr
from clearing.cli import DEFAULT_DATABASE_URL, clearing_group, intake_commands
from clearing.document import RefusedPayload
from clearing.intake import ClearingService, IntakeItem
from hub.cli import main
from hub.objects.service import ObjectStore
from hub.settings import DEFAULT_DATABASE_URL as HUB_DEFAULT
from tests.clearing.samples import NOW, cdr, dump, price, store_world, tariff
from tests.clearing.test_intake import contents


def invoke(*args: str, url: str | None = None) -> Result:
    env = {"HUB_DATABASE_URL": url} if url else {}
    return CliRunner().invoke(clearing_group, list(args), env=env, catch_exceptions=False)


async def invoke_async(*args: str, url: str) -> Result:
    # The command runs its own event loop (asyncio.run), so it runs in a thread beside the test's loop.
    return await asyncio.to_thread(invoke, *args, url=url)


def url_of(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=False)


def write(path: Path, content: Any) -> Path:
    path.write_bytes(dump(content))
    return path


# --- pre-flight ---------------------------------------------------------------------------------------------------


def test_check_cdr_without_the_store() -> None:
    report = check_cdr(dump(cdr()), now=NOW)
    assert (report.cdr, report.store_checked, report.validation_state) == ("NL/CPO/CDR1", False, "ok")
    assert (report.findings, report.price.outcome, report.price.tariff_source) == ([], "matched", "cdr")
    given = check_cdr(dump(cdr()), dump([tariff(price="0.30")]), now=NOW)
    assert (given.price.outcome, given.price.tariff_source) == ("mismatch", "given")
    with pytest.raises(RefusedPayload):
        check_cdr(b"[]", now=NOW)
    with pytest.raises(RefusedPayload):
        check_cdr(dump(cdr()), b"[]", now=NOW)


async def test_preflight_with_the_store_writes_nothing(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_world(store, db)
    await service.take_in(db, [IntakeItem(dump(cdr()), "file")])
    await db.commit()
    before = await contents(db)
    again = await service.preflight(db, dump(cdr()))
    assert (again.store_checked, again.validation_state, again.price.outcome) == (True, "ok", "matched")
    second = await service.preflight(db, dump(cdr("CDR2", total_cost=price("5"))))
    assert {f.code for f in second.findings} == {"CDR040", "CDR032"}
    assert second.price.outcome == "mismatch"
    given = await service.preflight(db, dump(cdr()), dump(tariff(price="0.25")), time_zone="UTC")
    assert (given.price.tariff_source, given.price.time_zone) == ("given", "UTC")
    await db.commit()
    assert await contents(db) == before


# --- commands -----------------------------------------------------------------------------------------------------


def test_the_commands_are_mounted_in_ocpi_hub() -> None:
    group = main.get_command(click.Context(main), "clearing")
    assert isinstance(group, click.Group)
    for command in intake_commands:
        assert group.get_command(click.Context(group), command.name or "") is command
    assert DEFAULT_DATABASE_URL == HUB_DEFAULT


def test_check_command_prints_findings_and_price(tmp_path: Path) -> None:
    result = invoke("check", "--cdr", str(write(tmp_path / "cdr.json", cdr(total_cost=price("5")))))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["validation_state"] == "warning"
    assert [f["code"] for f in report["findings"]] == ["CDR032", "CDR032"]
    assert report["findings"][0]["pointer"] == "/total_cost/excl_vat"
    assert report["price"]["outcome"] == "mismatch"
    # Amounts are JSON numbers.
    assert report["price"]["computed"]["total_cost"]["excl_vat"] == 4.0
    strict = invoke("check", "--strict", "--cdr", str(tmp_path / "cdr.json"))
    assert strict.exit_code == 2
    tariffs = write(tmp_path / "tariff.json", tariff(price="0.3125"))
    five = write(tmp_path / "five.json", cdr(total_cost=price("5"), total_energy_cost=price("5")))
    priced = invoke("check", "--cdr", str(five), "--tariff", str(tariffs), "--time-zone", "UTC")
    assert json.loads(priced.stdout)["price"]["outcome"] == "matched"
    (tmp_path / "bad.json").write_text("{")
    failed = invoke("check", "--cdr", str(tmp_path / "bad.json"))
    assert failed.exit_code == 1
    assert "not JSON" in failed.output


async def test_import_sync_show_and_check_against_the_database(
    tmp_path: Path, clearing_engine: AsyncEngine, db: AsyncSession, store: ObjectStore
) -> None:
    url = url_of(clearing_engine)
    await store_world(store, db)
    file = write(tmp_path / "cdrs.json", [cdr("CDR1"), cdr("CDR2", session_id="S2"), cdr("CDR1", remark="other")])
    result = await invoke_async("import", str(file), "--json", "--batch-size", "2", url=url)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["seen"], summary["accepted"], summary["conflicts"]) == (3, 2, 1)
    # CDR2 looks like CDR1 under another id and session (same token, EVSE, start and energy): a warning.
    assert summary["validation"] == {"ok": 1, "warning": 1}
    assert "importing cdrs.json" in result.stderr
    table = await invoke_async("import", str(file), url=url)
    assert "duplicates (unchanged)" in table.stdout
    await store.store_cdr(db, "NL", "CPO", dump(cdr("CDR3", session_id="S3")))
    await db.commit()
    synced = await invoke_async("sync", "--json", url=url)
    assert json.loads(synced.stdout)["accepted"] == 1
    shown = await invoke_async("show", "nl", "cpo", "cdr1", url=url)
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert (report["record"]["cdr_id"], report["record"]["pricing_state"]) == ("CDR1", "matched")
    assert [e["dimension"] for e in report["events"]] == ["delivery", "validation", "pricing"]
    missing = await invoke_async("show", "NL", "CPO", "NOPE", url=url)
    assert (missing.exit_code, "no clearing record" in missing.output) == (1, True)
    checked = await invoke_async("check", "--store", "--cdr", str(write(tmp_path / "c.json", cdr("CDR9"))), url=url)
    assert {f["code"] for f in json.loads(checked.stdout)["findings"]} == {"CDR040", "CDR041"}


def test_a_database_without_the_schema_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    result = invoke("sync", url=url)
    assert result.exit_code == 1
    assert "ocpi-hub db upgrade" in result.output
