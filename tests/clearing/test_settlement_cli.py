"""The settlement commands of ``ocpi-hub clearing`` through click's CliRunner against the test databases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from clearing.intake import ClearingService
from clearing.settlement.exports import EXPORT_COLUMNS
from tests.clearing.test_intake_cli import invoke_async, url_of
from tests.clearing.test_settlement import make, take_in


async def test_terms_close_statement_export_reconcile_and_disputes(
    tmp_path: Path, clearing_engine: AsyncEngine, db: AsyncSession, service: ClearingService
) -> None:
    url = url_of(clearing_engine)
    terms = await invoke_async(
        "terms", "set", "--cpo", "nl/cpo", "--emsp", "DE/MSP", "--valid-from", "2026-01-01",
        "--approval-window-days", "0", "--fee", "per_session=0.10:cpo", "--fee", "percent=1:emsp", url=url,
    )  # fmt: skip
    assert terms.exit_code == 0, terms.output
    assert json.loads(terms.stdout)["fees"]["per_session"] == {"rate": 0.1, "payer": "cpo"}
    bad = await invoke_async(
        "terms", "set", "--cpo", "NL/CPO", "--emsp", "DE/MSP", "--valid-from", "2026-01-01", "--fee", "tip=1:cpo",
        url=url,
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "KIND=RATE:PAYER" in bad.output
    listed = await invoke_async("terms", "list", url=url)
    assert [t["cpo"] for t in json.loads(listed.stdout)] == ["NL/CPO"]
    await take_in(db, service, make("A1", "4.00"), make("A2", "2.00"), make("A3", "1.00"))
    disputed = await invoke_async(
        "dispute", "open", "NL", "CPO", "A3", "--by", "msp:bob", "--reason", "energy", url=url
    )
    assert disputed.exit_code == 0, disputed.output
    dispute_id = json.loads(disputed.stdout)["dispute_id"]

    closed = await invoke_async("close-period", "--period", "2026-01", url=url)
    assert closed.exit_code == 0, closed.output
    result = json.loads(closed.stdout)
    assert (result["state"], list(result["statements"])) == ("closed", ["NL/CPO|DE/MSP|EUR"])
    assert "closing 2026-01" in closed.stderr
    again = await invoke_async("close-period", "--period", "2026-01", url=url)
    assert json.loads(again.stdout)["statements"] == result["statements"]
    assert json.loads(again.stdout)["already_closed"] is True

    shown = await invoke_async("statement", "--period", "2026-01", "--party", "DE/MSP", "--json", url=url)
    [statement] = json.loads(shown.stdout)
    assert (statement["payable"], statement["fees_cpo"], statement["fees_emsp"]) == (6, 0.2, 0.06)
    assert [line["kind"] for line in statement["lines"]] == ["cdr", "cdr", "cdr", "fee", "fee"]
    table = await invoke_async("statement", "--period", "2026-01", url=url)
    assert "payable" in table.stdout
    none = await invoke_async("statement", "--period", "2026-01", "--party", "FR/EMP", "--json", url=url)
    assert json.loads(none.stdout) == []
    missing = await invoke_async("statement", "--period", "2025-01", url=url)
    assert (missing.exit_code, "no period 2025-01" in missing.output) == (1, True)

    out = tmp_path / "jan.csv"
    exported = await invoke_async("export", "--period", "2026-01", "--format", "csv", "--out", str(out), url=url)
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [(r["kind"], r["cdr_id"], r["amount_incl_vat"]) for r in rows[:3]] == [
        ("statement", "", "6.00"),
        ("cdr", "A1", "4.00"),
        ("cdr", "A2", "2.00"),
    ]
    book = tmp_path / "jan.xlsx"
    as_xlsx = await invoke_async("export", "--period", "2026-01", "--format", "xlsx", "--out", str(book), url=url)
    assert as_xlsx.exit_code == 0, as_xlsx.output
    sheet = load_workbook(book, read_only=True)["settlement"]
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert tuple(cells[0]) == EXPORT_COLUMNS
    amount = EXPORT_COLUMNS.index("amount_incl_vat")
    assert [(row[6], row[10], row[amount]) for row in cells[1:4]] == [
        ("statement", None, 6),
        ("cdr", "A1", 4),
        ("cdr", "A2", 2),
    ]
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("cdr_id,amount\nA1,4.00\nA2,2.10\nA9,3.00\n")
    reconciled = await invoke_async(
        "reconcile", "--period", "2026-01", "--party", "DE/MSP", "--file", str(theirs), url=url
    )
    report = json.loads(reconciled.stdout)
    assert (report["matched"], report["missing_at_hub"], report["missing_at_counterparty"]) == (["A1"], ["A9"], [])
    assert report["amount_differs"] == [{"cdr_id": "A2", "ours": 2.0, "theirs": 2.1, "difference": 0.1}]
    (tmp_path / "bad.csv").write_text("id,value\n")
    refused = await invoke_async(
        "reconcile", "--period", "2026-01", "--party", "DE/MSP", "--file", str(tmp_path / "bad.csv"), url=url
    )
    assert (refused.exit_code, "cdr_id and amount" in refused.output) == (1, True)

    both = await invoke_async(
        "dispute", "resolve", str(dispute_id), "--reject", "--adjust", "1", "--by", "x", "--reason", "y", url=url
    )
    assert both.exit_code == 2
    resolved = await invoke_async(
        "dispute", "resolve", str(dispute_id), "--adjust", "-0.25", "--by", "cpo:carol", "--reason", "meter", url=url
    )
    assert resolved.exit_code == 0, resolved.output
    assert json.loads(resolved.stdout)["state"] == "adjusted"
    feb = await invoke_async("close-period", "--period", "2026-02", url=url)
    assert feb.exit_code == 0, feb.output
    shown = await invoke_async("statement", "--period", "2026-02", "--json", url=url)
    [statement] = json.loads(shown.stdout)
    assert [(line["kind"], line["amount_incl_vat"]) for line in statement["lines"][:2]] == [
        ("cdr", 1.0),
        ("adjustment", -0.25),
    ]
