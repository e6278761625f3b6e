"""Statement exports (CSV and XLSX, schema `EXPORT_SCHEMA_VERSION`) and reconciliation of a party's records (ADR 0208).

The export has one row per statement (``kind`` = ``statement``, with the totals) followed by its lines (``cdr``,
``adjustment``, ``fee``), all with the columns of `EXPORT_COLUMNS`. In CSV amounts are plain decimal strings, dates
ISO 8601 UTC, empty cells where a column does not apply; XLSX has the same columns on one sheet ("settlement") with
amounts and counts as numbers.

Column schema, in order (columns are only ever added at the end, with a new schema version):

* version 1: ``schema_version, period, statement_id, cpo, emsp, currency, kind, position, included, note, cdr_id,
  session_id, start_date_time, end_date_time, energy_kwh, stated_excl_vat, stated_incl_vat, recomputed_excl_vat,
  recomputed_incl_vat, verification, payer, quantity, amount_excl_vat, amount_incl_vat, cdr_count, fees_cpo,
  fees_emsp, payable, engine_version, input_hash``;
* version 2 (ADR 0209) adds ``vat_regime`` (statement, cdr and adjustment rows: ``as_stated``, ``domestic``,
  ``reverse_charge`` or ``outside_scope``), ``vat_rate`` (percent, statement rows of the domestic regime),
  ``vat_amount`` (statement: the statement's VAT; cdr and adjustment rows: the line's VAT), ``vat_note`` (statement
  rows: the VAT note printed, e.g. the reverse-charge note), ``original_currency``, ``original_excl_vat``,
  ``original_incl_vat`` (cdr and adjustment rows converted into the statement's currency: the amounts before
  conversion; stated amounts stay in the original currency), ``fx_rate``, ``fx_rate_date``, ``fx_source`` (those
  rows: the period's reference rate used, 1 original = fx_rate statement currency; statement rows: the rates used,
  ``BASE/QUOTE=rate@date source`` joined by ``;`` in ``fx_rate``).

Reconciliation reads a CSV with at least the columns ``cdr_id`` and ``amount`` (the party's amount incl. VAT for the
CDR) and sorts every id into matched, missing on our side (``missing_at_hub``), missing on theirs
(``missing_at_counterparty``), amount differs (with theirs - ours) or duplicate (the same id twice in their file).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

import msgspec
from openpyxl import Workbook  # type: ignore[import-untyped]

from clearing.settlement.service import StatementReport
from clearing.settlement.terms import plain

__all__ = [
    "EXPORT_COLUMNS",
    "EXPORT_SCHEMA_VERSION",
    "AmountDifference",
    "ReconcileError",
    "Reconciliation",
    "export_rows",
    "read_party_csv",
    "reconcile",
    "write_csv",
    "write_xlsx",
]

EXPORT_SCHEMA_VERSION: Final = "2"
EXPORT_COLUMNS: Final = (
    "schema_version",
    "period",
    "statement_id",
    "cpo",
    "emsp",
    "currency",
    "kind",
    "position",
    "included",
    "note",
    "cdr_id",
    "session_id",
    "start_date_time",
    "end_date_time",
    "energy_kwh",
    "stated_excl_vat",
    "stated_incl_vat",
    "recomputed_excl_vat",
    "recomputed_incl_vat",
    "verification",
    "payer",
    "quantity",
    "amount_excl_vat",
    "amount_incl_vat",
    "cdr_count",
    "fees_cpo",
    "fees_emsp",
    "payable",
    "engine_version",
    "input_hash",
    # Schema version 2 (ADR 0209).
    "vat_regime",
    "vat_rate",
    "vat_amount",
    "vat_note",
    "original_currency",
    "original_excl_vat",
    "original_incl_vat",
    "fx_rate",
    "fx_rate_date",
    "fx_source",
)


class ReconcileError(ValueError):
    """An uploaded file that cannot be read; the message names the row."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def export_rows(statements: Iterable[StatementReport]) -> Iterator[dict[str, str]]:
    """The export's rows, each a dict over `EXPORT_COLUMNS`."""
    for st in statements:
        common = {"schema_version": EXPORT_SCHEMA_VERSION, "period": st.period, "statement_id": st.id,
                  "cpo": st.cpo, "emsp": st.emsp, "currency": st.currency}  # fmt: skip
        yield {
            column: _cell(value)
            for column, value in {
                **dict.fromkeys(EXPORT_COLUMNS),
                **common,
                "kind": "statement",
                "position": 0,
                "energy_kwh": st.total_energy,
                "amount_excl_vat": st.amount_excl_vat,
                "amount_incl_vat": st.amount_incl_vat,
                "cdr_count": st.cdr_count,
                "fees_cpo": st.fees_cpo,
                "fees_emsp": st.fees_emsp,
                "payable": st.payable,
                "engine_version": st.engine_version,
                "input_hash": st.input_hash,
                "vat_regime": st.vat_regime,
                "vat_rate": plain(st.vat_rate) if st.vat_rate is not None else None,
                "vat_amount": st.vat_amount,
                "vat_note": st.vat_note,
                "fx_rate": ";".join(
                    f"{pair}={r['rate']}@{r['rate_date']} {r['source']}" for pair, r in sorted(st.rates.items())
                )
                or None,
            }.items()
        }
        for line in st.lines:
            details = line.details or {}
            row = {
                **dict.fromkeys(EXPORT_COLUMNS),
                **common,
                "kind": line.kind,
                "position": line.position,
                "included": line.included,
                "note": line.note,
                "payer": line.payer,
                "quantity": line.quantity if line.kind == "fee" else None,
                "amount_excl_vat": line.amount_excl_vat,
                "amount_incl_vat": line.amount_incl_vat,
                "cdr_id": details.get("cdr_id"),
            }
            if line.kind in ("cdr", "adjustment"):
                row |= {
                    "vat_regime": details.get("vat_regime"),
                    "vat_amount": line.amount_incl_vat - line.amount_excl_vat if "vat_regime" in details else None,
                    "original_currency": details.get("original_currency"),
                    "fx_rate": details.get("fx_rate"),
                    "fx_rate_date": details.get("fx_rate_date"),
                    "fx_source": details.get("fx_source"),
                }
                if "original_currency" in details:
                    row |= (
                        {"original_excl_vat": details.get("stated_excl_vat"),
                         "original_incl_vat": details.get("stated_incl_vat")}
                        if line.kind == "cdr"
                        else {"original_excl_vat": details.get("original_amount"),
                              "original_incl_vat": details.get("original_amount")}
                    )  # fmt: skip
            if line.kind == "cdr":
                row |= {
                    "session_id": details.get("session_id"),
                    "start_date_time": details.get("start_date_time"),
                    "end_date_time": details.get("end_date_time"),
                    "energy_kwh": details.get("energy"),
                    "stated_excl_vat": details.get("stated_excl_vat"),
                    "stated_incl_vat": details.get("stated_incl_vat"),
                    "recomputed_excl_vat": details.get("recomputed_excl_vat"),
                    "recomputed_incl_vat": details.get("recomputed_incl_vat"),
                    "verification": details.get("verification"),
                }
            yield {column: _cell(row[column]) for column in EXPORT_COLUMNS}


def write_csv(statements: Iterable[StatementReport], out: io.TextIOBase | Any) -> int:
    """Write the export as CSV to a text stream; return the number of data rows."""
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in export_rows(statements):
        writer.writerow(row)
        count += 1
    return count


_NUMBERS: Final = frozenset({
    "energy_kwh", "stated_excl_vat", "stated_incl_vat", "recomputed_excl_vat", "recomputed_incl_vat", "quantity",
    "amount_excl_vat", "amount_incl_vat", "fees_cpo", "fees_emsp", "payable", "vat_rate", "vat_amount",
    "original_excl_vat", "original_incl_vat",
})  # fmt: skip
_INTEGERS: Final = frozenset({"statement_id", "position", "cdr_count"})


def _typed(column: str, value: str) -> Any:
    if value == "":
        return None
    if column in _NUMBERS:
        return Decimal(value)
    if column in _INTEGERS:
        return int(value)
    return value


def write_xlsx(statements: Iterable[StatementReport], path: Path) -> int:
    """Write the export as an XLSX workbook (one sheet, "settlement", streamed); return the number of data rows."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("settlement")
    sheet.append(list(EXPORT_COLUMNS))
    count = 0
    for row in export_rows(statements):
        sheet.append([_typed(column, row[column]) for column in EXPORT_COLUMNS])
        count += 1
    workbook.save(path)
    return count


class AmountDifference(msgspec.Struct, frozen=True, kw_only=True):
    cdr_id: str
    ours: Decimal
    theirs: Decimal
    difference: Decimal


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    party: str
    period: str
    matched: list[str]
    missing_at_hub: list[str]
    missing_at_counterparty: list[str]
    amount_differs: list[AmountDifference]
    duplicates: list[str]


def read_party_csv(text: str) -> list[tuple[str, Decimal]]:
    """The (cdr_id, amount) rows of an uploaded CSV; raises `ReconcileError` naming a bad row."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"cdr_id", "amount"} <= {f.strip() for f in reader.fieldnames}:
        raise ReconcileError("the file needs a header with the columns cdr_id and amount")
    rows: list[tuple[str, Decimal]] = []
    for number, row in enumerate(reader, start=2):
        clean = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        try:
            amount = Decimal(clean["amount"])
        except InvalidOperation:
            raise ReconcileError(f"row {number}: amount {clean['amount']!r} is not a number") from None
        if not clean["cdr_id"] or not amount.is_finite():
            raise ReconcileError(f"row {number}: needs a cdr_id and a finite amount")
        rows.append((clean["cdr_id"], amount))
    return rows


def reconcile(
    statements: Iterable[StatementReport], party: str, period: str, theirs: Iterable[tuple[str, Decimal]]
) -> Reconciliation:
    """Compare the settled CDR lines of ``statements`` (amount incl. VAT) with the party's (cdr_id, amount) rows."""
    ours: dict[str, Decimal] = {}
    for st in statements:
        for line in st.lines:
            if line.kind == "cdr" and line.included and line.details:
                cdr_id = str(line.details["cdr_id"])
                ours[cdr_id] = ours.get(cdr_id, Decimal(0)) + line.amount_incl_vat
    seen: dict[str, Decimal] = {}
    duplicates: list[str] = []
    for cdr_id, amount in theirs:
        if cdr_id in seen:
            duplicates.append(cdr_id)
            continue
        seen[cdr_id] = amount
    matched, differs, missing_at_hub = [], [], []
    for cdr_id, amount in seen.items():
        if cdr_id not in ours:
            missing_at_hub.append(cdr_id)
        elif ours[cdr_id] == amount:
            matched.append(cdr_id)
        else:
            differs.append(
                AmountDifference(cdr_id=cdr_id, ours=ours[cdr_id], theirs=amount, difference=amount - ours[cdr_id])
            )
    return Reconciliation(
        party=party,
        period=period,
        matched=sorted(matched),
        missing_at_hub=sorted(missing_at_hub),
        missing_at_counterparty=sorted(set(ours) - set(seen)),
        amount_differs=sorted(differs, key=lambda d: d.cdr_id),
        duplicates=sorted(set(duplicates)),
    )
