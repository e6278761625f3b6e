"""VAT regimes and currency conversion per agreement (ADR 0209), on PostgreSQL and SQLite.

Clearing notes §1.5: the VAT treatment is a configured property of each agreement, never inferred; convert currencies
only when an agreement says so, at a documented reference rate fixed per period. §3.2: invoices stay gross, netting
happens on payment amounts after VAT.
"""

from __future__ import annotations

import io
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from clearing.intake import ClearingService
from clearing.models import ClearingCdrRow
from clearing.settlement.exports import EXPORT_COLUMNS, write_csv
from clearing.settlement.models import PeriodRow, StatementLineRow, StatementRow
from clearing.settlement.service import PeriodError, SettlementService, StatementReport
from clearing.settlement.terms import VAT_NOTES, FeeRule, Terms, TermsError
from hub.platform.clock import FixedClock
from tests.clearing.test_intake_cli import invoke_async, url_of
from tests.clearing.test_settlement import JAN, approve, cdr_lines, make, read, take_in

D = Decimal


@pytest.fixture
def settlement(clock: FixedClock) -> SettlementService:
    return SettlementService(clock, batch_size=2)


async def set_terms(sessions: async_sessionmaker[AsyncSession], settlement: SettlementService, **fields: Any) -> None:
    fields = {"cpo": "NL/CPO", "emsp": "DE/MSP", "valid_from": JAN, "currency": "EUR", **fields}
    async with sessions() as session, session.begin():
        await settlement.set_terms(session, Terms(**fields), actor="op:ann")


async def set_rate(
    sessions: async_sessionmaker[AsyncSession], settlement: SettlementService, rate: str, **kw: Any
) -> None:
    args = {"label": "2026-01", "base": "USD", "quote": "EUR", "rate_date": date(2026, 1, 31), "source": "ECB", **kw}
    async with sessions() as session, session.begin():
        await settlement.set_rate(session, rate=D(rate), actor="op:fin", **args)


def by_emsp(statements: list[StatementReport]) -> dict[tuple[str, str], StatementReport]:
    return {(st.emsp, st.currency): st for st in statements}


async def test_domestic_vat_is_computed_at_the_agreed_rate_on_the_net_lines_and_once_per_statement(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await set_terms(sessions, settlement, vat_regime="domestic", vat_rate=D(19))
    # V1 states 21 % VAT (4.84): under a domestic 19 % agreement the stated VAT is not used.
    await take_in(
        db, service, make("V1", "4.00", incl="4.84"), make("V2", "2.50"), *(make(f"W{i}", "0.03") for i in range(3))
    )
    await approve(db, service, "V1", "V2", "W0", "W1", "W2")
    await settlement.close_period(sessions, "2026-01")
    [st] = await read(sessions, settlement, "2026-01")
    lines = cdr_lines(st)
    # Line VAT on each rounded net line: 4.00 → 0.76; 2.50 → 0.475 → 0.48; 0.03 → 0.0057 → 0.01.
    assert (lines["V1"].amount_excl_vat, lines["V1"].amount_incl_vat) == (D("4.00"), D("4.76"))
    assert lines["V2"].amount_incl_vat == D("2.98")
    assert lines["W0"].amount_incl_vat == D("0.04")
    assert D(lines["V1"].details["stated_incl_vat"]) == D("4.84"), "what the CDR stated stays visible"
    assert (lines["V1"].details["vat_regime"], D(lines["V1"].details["vat_amount"])) == ("domestic", D("0.76"))
    # The statement's VAT is computed once on the rate group's net sum (EN 16931): 6.59 x 19 % = 1.2521 → 1.25,
    # not the sum of the lines' VAT (1.27).
    assert st.amount_excl_vat == D("6.59")
    assert (st.vat_regime, st.vat_rate, st.vat_amount, st.vat_note) == ("domestic", D(19), D("1.25"), "VAT at 19 %")
    assert (st.amount_incl_vat, st.payable) == (D("7.84"), D("7.84"))


async def test_reverse_charge_and_outside_scope_charge_no_vat_and_say_why(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await set_terms(sessions, settlement, vat_regime="reverse_charge")
    await set_terms(sessions, settlement, emsp="FR/EMP", vat_regime="outside_scope", vat_note="Art. 2 VAT Directive")
    await take_in(db, service, make("R1", "4.00", incl="4.84"), make("O1", "5.00", incl="6.00", emsp=("FR", "EMP")))
    await approve(db, service, "R1", "O1")
    await settlement.close_period(sessions, "2026-01")
    statements = by_emsp(await read(sessions, settlement, "2026-01"))
    reverse, outside = statements["DE/MSP", "EUR"], statements["FR/EMP", "EUR"]
    assert (reverse.vat_regime, reverse.vat_amount, reverse.amount_incl_vat, reverse.payable) == (
        "reverse_charge",
        D(0),
        D("4.00"),
        D("4.00"),
    )
    assert reverse.vat_note == VAT_NOTES["reverse_charge"]
    assert "recipient accounts for the VAT" in (reverse.vat_note or "")
    assert cdr_lines(reverse)["R1"].amount_incl_vat == D("4.00")
    # outside scope, with the note the agreement configured instead of the default
    assert (outside.vat_regime, outside.vat_amount, outside.payable, outside.vat_note) == (
        "outside_scope",
        D(0),
        D("5.00"),
        "Art. 2 VAT Directive",
    )


async def test_without_a_regime_the_vat_stays_as_stated_and_is_flagged_so(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await take_in(db, service, make("A1", "4.00", incl="4.84"), make("A2", "2.00"))
    await approve(db, service, "A1", "A2")
    await settlement.close_period(sessions, "2026-01")
    [st] = await read(sessions, settlement, "2026-01")
    assert (st.vat_regime, st.vat_amount, st.payable) == ("as_stated", D("0.84"), D("6.84"))
    assert st.vat_note == VAT_NOTES["as_stated"]
    assert cdr_lines(st)["A1"].details["vat_regime"] == "as_stated"


async def test_net_positions_with_vat_still_sum_to_minus_the_fees(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    fees = {"per_session": FeeRule(rate=D("0.10"), payer="cpo"), "percent": FeeRule(rate=D(1), payer="emsp")}
    await set_terms(sessions, settlement, vat_regime="domestic", vat_rate=D(19), fees=fees)
    await set_terms(sessions, settlement, emsp="FR/EMP", vat_regime="reverse_charge", fees=fees)
    # FR/EMP is also a CPO here, selling to DE/MSP (as-stated VAT), so positions net against each other.
    await take_in(
        db,
        service,
        make("N1", "10.00"),
        make("N2", "3.33"),
        make("N3", "7.00", emsp=("FR", "EMP")),
        make("N4", "2.00", incl="2.40", cpo=("FR", "EMP")),
    )
    await approve(db, service, "N1", "N2", "N3")
    await approve(db, service, "N4", cpo=("FR", "EMP"))
    result = await settlement.close_period(sessions, "2026-01")
    statements = {(st.cpo, st.emsp): st for st in await read(sessions, settlement, "2026-01")}
    domestic = statements["NL/CPO", "DE/MSP"]
    # 13.33 net; VAT 2.5327 → 2.53; the percent fee is on the net amount: 0.1333 → 0.13.
    assert (domestic.vat_amount, domestic.payable, domestic.fees_emsp) == (D("2.53"), D("15.86"), D("0.13"))
    netting = result.netting
    gross = {k: D(v) for k, v in netting["gross"]["EUR"].items()}
    # Netting runs on the payment amounts after VAT: invoices stay gross (notes §3.2).
    assert gross == {"FR/EMP->DE/MSP": D("2.40"), "NL/CPO->DE/MSP": D("15.86"), "NL/CPO->FR/EMP": D("7.00")}
    multi = {k: D(v) for k, v in netting["multilateral"]["EUR"].items()}
    after = {k: D(v) for k, v in netting["multilateral_after_fees"]["EUR"].items()}
    total_fees = sum((st.fees_cpo + st.fees_emsp for st in statements.values()), D(0))
    assert sum(multi.values()) == 0
    assert sum(after.values()) == -total_fees == -D(netting["hub_fees"]["EUR"])
    assert multi == {"DE/MSP": D("-18.26"), "FR/EMP": D("-4.60"), "NL/CPO": D("22.86")}


async def test_an_adjustment_under_domestic_vat_is_a_net_correction_in_the_vat_base(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await set_terms(sessions, settlement, vat_regime="domestic", vat_rate=D(19))
    await take_in(db, service, make("K1", "4.00"))
    await approve(db, service, "K1")
    async with sessions() as session, session.begin():
        dispute = await settlement.open_dispute(session, "NL", "CPO", "K1", actor="msp:bob", reason="price")
    await settlement.close_period(sessions, "2026-01")
    async with sessions() as session, session.begin():
        await settlement.resolve_dispute(session, dispute, "adjustment", actor="cpo:c", reason="-1", amount=D(-1))
    await settlement.close_period(sessions, "2026-02")
    [feb] = await read(sessions, settlement, "2026-02")
    [adjustment] = [line for line in feb.lines if line.kind == "adjustment"]
    assert (adjustment.amount_excl_vat, adjustment.amount_incl_vat) == (D("-1.00"), D("-1.19"))
    # Taxable 4.00 - 1.00 = 3.00, VAT 0.57, payable 3.57.
    assert (feb.amount_excl_vat, feb.adjustments, feb.vat_amount, feb.payable) == (D(4), D(-1), D("0.57"), D("3.57"))


async def test_conversion_at_the_period_rate_only_where_the_agreement_says_so(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await set_terms(sessions, settlement, settlement_currency="EUR", rate_source="ECB")
    await set_rate(sessions, settlement, "0.92")
    await set_rate(sessions, settlement, "0.95", source="FED")  # another source: not the one the agreement names
    await take_in(
        db,
        service,
        make("U1", "10.00", incl="11.90", currency="USD"),
        make("E1", "4.00"),
        make("F1", "3.00", currency="USD", emsp=("FR", "EMP")),  # no conversion agreed: settles in USD
    )
    await approve(db, service, "U1", "E1", "F1")
    result = await settlement.close_period(sessions, "2026-01")
    assert sorted(result.statements) == ["NL/CPO|DE/MSP|EUR", "NL/CPO|FR/EMP|USD"]
    statements = by_emsp(await read(sessions, settlement, "2026-01"))
    eur = statements["DE/MSP", "EUR"]
    u1 = cdr_lines(eur)["U1"]
    # Converted before the line's one rounding: 10.00 x 0.92 = 9.20; 11.90 x 0.92 = 10.948 → 10.95.
    assert (u1.amount_excl_vat, u1.amount_incl_vat) == (D("9.20"), D("10.95"))
    assert (u1.details["original_currency"], D(u1.details["fx_rate"]), u1.details["fx_source"]) == (
        "USD",
        D("0.92"),
        "ECB",
    )
    assert D(u1.details["stated_excl_vat"]) == D(10), "the stated amount stays in the CDR's currency"
    assert eur.payable == D("14.95")
    assert eur.rates == {"USD/EUR": {"rate": D("0.92"), "rate_date": "2026-01-31", "source": "ECB"}}
    assert statements["FR/EMP", "USD"].rates == {}
    assert set(result.netting["gross"]) == {"EUR", "USD"}, "currencies not converted are netted apart"
    out = io.StringIO()
    write_csv(await read(sessions, settlement, "2026-01"), out)
    rows = [dict(zip(EXPORT_COLUMNS, line.split(","), strict=True)) for line in out.getvalue().splitlines()[1:]]
    head = next(r for r in rows if r["kind"] == "statement" and r["currency"] == "EUR")
    assert head["fx_rate"] == "USD/EUR=0.92@2026-01-31 ECB"
    assert head["vat_regime"] == "as_stated"
    line = next(r for r in rows if r["cdr_id"] == "U1")
    assert (line["original_currency"], D(line["original_excl_vat"]), line["fx_rate"], line["fx_rate_date"]) == (
        "USD",
        D(10),
        "0.92",
        "2026-01-31",
    )
    assert (line["amount_excl_vat"], line["vat_amount"], line["schema_version"]) == ("9.20", "1.75", "2")


async def test_a_missing_rate_refuses_the_close_naming_the_pair(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await set_terms(sessions, settlement, settlement_currency="EUR", rate_source="ECB")
    await set_rate(sessions, settlement, "1.05", base="CHF", source="SNB")  # the wrong source does not count
    await take_in(db, service, make("C1", "10.00", currency="CHF"), make("E1", "4.00"))
    await approve(db, service, "C1", "E1")
    with pytest.raises(PeriodError, match=r"no CHF/EUR reference rate from ECB for period 2026-01"):
        await settlement.close_period(sessions, "2026-01")
    async with sessions() as session:
        assert await session.scalar(select(PeriodRow.state).where(PeriodRow.label == "2026-01")) != "closed"
        assert list(await session.scalars(select(StatementRow))) == []
        assert set(await session.scalars(select(ClearingCdrRow.settlement_state))) == {"unsettled"}
    # Setting the rate is still allowed (the period is not closed); the close then goes through.
    await set_rate(sessions, settlement, "1.04", base="CHF")
    result = await settlement.close_period(sessions, "2026-01")
    assert list(result.statements) == ["NL/CPO|DE/MSP|EUR"]
    [st] = await read(sessions, settlement, "2026-01")
    assert st.payable == D("14.40")


async def _reopen(sessions: async_sessionmaker[AsyncSession], label: str) -> None:
    """Undo a close by hand, to rerun it from the same stored inputs (what a reproducibility check does)."""
    async with sessions() as session, session.begin():
        period_id = await session.scalar(select(PeriodRow.id).where(PeriodRow.label == label))
        statements = select(StatementRow.id).where(StatementRow.period_id == period_id)
        await session.execute(delete(StatementLineRow).where(StatementLineRow.statement_id.in_(statements)))
        await session.execute(delete(StatementRow).where(StatementRow.period_id == period_id))
        await session.execute(update(ClearingCdrRow).values(settlement_state="unsettled"))
        await session.execute(update(PeriodRow).where(PeriodRow.id == period_id).values(state="open", netting=None))


async def test_rates_are_fixed_per_period_and_enter_the_statement_hash(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await set_terms(sessions, settlement, settlement_currency="EUR", rate_source="ECB")
    await set_rate(sessions, settlement, "0.92")
    await take_in(db, service, make("U1", "10.00", currency="USD"))
    await approve(db, service, "U1")
    first = (await settlement.close_period(sessions, "2026-01")).statements["NL/CPO|DE/MSP|EUR"]
    with pytest.raises(PeriodError, match="2026-01 is closed: its reference rates are fixed"):
        await set_rate(sessions, settlement, "0.50")
    async with sessions() as session:
        [rate] = await settlement.rates(session, "2026-01")
    assert (rate.base, rate.quote, rate.rate, rate.rate_date, rate.source) == (
        "USD",
        "EUR",
        D("0.92"),
        date(2026, 1, 31),
        "ECB",
    )
    [st] = await read(sessions, settlement, "2026-01")
    assert (st.payable, st.input_hash) == (D("9.20"), first)
    # The same inputs give the same hash; another rate gives other amounts and another hash.
    await _reopen(sessions, "2026-01")
    assert (await settlement.close_period(sessions, "2026-01")).statements["NL/CPO|DE/MSP|EUR"] == first
    await _reopen(sessions, "2026-01")
    await set_rate(sessions, settlement, "0.93")
    changed = (await settlement.close_period(sessions, "2026-01")).statements["NL/CPO|DE/MSP|EUR"]
    [st] = await read(sessions, settlement, "2026-01")
    assert (st.payable, changed != first) == (D("9.30"), True)


async def test_rate_input_checks(sessions: async_sessionmaker[AsyncSession], settlement: SettlementService) -> None:
    for kw, message in (
        ({"rate": "0"}, "positive"),
        ({"rate": "1.1", "quote": "USD"}, "two different currencies"),
        ({"rate": "1.1", "base": "US"}, "ISO 4217"),
        ({"rate": "1.1", "source": " "}, "rate source"),
    ):
        with pytest.raises(PeriodError, match=message):
            await set_rate(sessions, settlement, **kw)


def test_terms_check_the_vat_regime_and_the_conversion() -> None:
    base: dict[str, Any] = {"cpo": "NL/CPO", "emsp": "DE/MSP", "valid_from": JAN, "currency": "EUR"}
    Terms(**base, vat_regime="domestic", vat_rate=D("7.7")).check()
    assert Terms(**base, vat_regime="domestic", vat_rate=D("20.0000")).note == "VAT at 20 %"
    for fields, message in (
        ({"vat_regime": "zero"}, "VAT regime"),
        ({"vat_regime": "domestic"}, "domestic VAT needs a rate"),
        ({"vat_regime": "domestic", "vat_rate": D(100)}, "domestic VAT needs a rate"),
        ({"vat_regime": "reverse_charge", "vat_rate": D(19)}, "only to the domestic regime"),
        ({"settlement_currency": "EUR"}, "reference rate source"),
        ({"rate_source": "ECB"}, "needs a settlement currency"),
        ({"settlement_currency": "EURO", "rate_source": "ECB"}, "ISO 4217"),
    ):
        with pytest.raises(TermsError, match=message):
            Terms(**base, **fields).check()


async def test_cli_terms_with_vat_and_conversion_rates_set_and_list_and_the_export(
    tmp_path: Path, clearing_engine: AsyncEngine, db: AsyncSession, service: ClearingService
) -> None:
    url = url_of(clearing_engine)
    terms = await invoke_async(
        "terms", "set", "--cpo", "NL/CPO", "--emsp", "DE/MSP", "--valid-from", "2026-01-01", "--approval-window-days",
        "0", "--vat-regime", "domestic", "--vat-rate", "19", "--settlement-currency", "eur", "--rate-source", "ECB",
        url=url,
    )  # fmt: skip
    assert terms.exit_code == 0, terms.output
    shown = json.loads(terms.stdout)
    assert (shown["vat_regime"], shown["vat_rate"], shown["settlement_currency"]) == ("domestic", 19, "EUR")
    listed = json.loads((await invoke_async("terms", "list", url=url)).stdout)
    assert (listed[0]["vat_regime"], listed[0]["rate_source"]) == ("domestic", "ECB")
    refused = await invoke_async(
        "terms", "set", "--cpo", "NL/CPO", "--emsp", "DE/MSP", "--valid-from", "2026-01-01", "--vat-regime",
        "reverse_charge", "--vat-rate", "19", url=url,
    )  # fmt: skip
    assert (refused.exit_code, "only to the domestic regime" in refused.output) == (2, True)

    await take_in(db, service, make("U1", "10.00", currency="USD"))
    missing = await invoke_async("close-period", "--period", "2026-01", url=url)
    assert (missing.exit_code, "no USD/EUR reference rate from ECB" in missing.output) == (1, True)
    rate_args = ("rates", "set", "--period", "2026-01", "--from", "usd", "--to", "EUR", "--date", "2026-01-31")
    rate = await invoke_async(*rate_args, "--rate", "0.92", "--source", "ECB", url=url)
    assert rate.exit_code == 0, rate.output
    assert json.loads(rate.stdout) | {"set_at": None} == {
        "period": "2026-01", "base": "USD", "quote": "EUR", "rate": 0.92, "rate_date": "2026-01-31", "source": "ECB",
        "set_by": "operator:cli", "set_at": None,
    }  # fmt: skip
    bad = await invoke_async(*rate_args, "--rate", "abc", "--source", "ECB", url=url)
    assert (bad.exit_code, "is not a number" in bad.output) == (2, True)
    closed = await invoke_async("close-period", "--period", "2026-01", url=url)
    assert closed.exit_code == 0, closed.output
    again = await invoke_async(*rate_args, "--rate", "0.5", "--source", "ECB", url=url)
    assert (again.exit_code, "reference rates are fixed" in again.output) == (1, True)
    rates = json.loads((await invoke_async("rates", "list", "--period", "2026-01", url=url)).stdout)
    assert [(r["base"], r["rate"]) for r in rates] == [("USD", 0.92)]

    # 10.00 USD x 0.92 = 9.20 EUR, domestic VAT 19 % = 1.748 → 1.75.
    [statement] = json.loads((await invoke_async("statement", "--period", "2026-01", "--json", url=url)).stdout)
    assert (statement["vat_regime"], statement["vat_amount"], statement["payable"]) == ("domestic", 1.75, 10.95)
    assert statement["rates"] == {"USD/EUR": {"rate": 0.92, "rate_date": "2026-01-31", "source": "ECB"}}
    table = await invoke_async("statement", "--period", "2026-01", url=url)
    assert "domestic: VAT at 19 %" in table.stdout
    book = tmp_path / "jan.xlsx"
    exported = await invoke_async("export", "--period", "2026-01", "--format", "xlsx", "--out", str(book), url=url)
    assert exported.exit_code == 0, exported.output
    cells = [list(row) for row in load_workbook(book, read_only=True)["settlement"].iter_rows(values_only=True)]
    assert tuple(cells[0]) == EXPORT_COLUMNS
    # Read-only openpyxl ends a row at its last non-empty cell.
    width = len(EXPORT_COLUMNS)
    head, line = (dict(zip(EXPORT_COLUMNS, row + [None] * (width - len(row)), strict=True)) for row in cells[1:3])
    assert (head["vat_regime"], head["vat_rate"], head["vat_amount"], head["vat_note"]) == (
        "domestic",
        19,
        1.75,
        "VAT at 19 %",
    )
    assert (line["original_currency"], line["original_excl_vat"], line["fx_rate"], line["fx_source"]) == (
        "USD",
        10,
        "0.92",
        "ECB",
    )
