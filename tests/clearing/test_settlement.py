"""Settlement: terms, closing periods into statements, late and credit CDRs, fees, rounding, disputes, exports and
reconciliation, on PostgreSQL and SQLite (the ``sessions`` fixture of ``tests/clearing/conftest.py``)."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clearing.intake import ClearingService, IntakeItem
from clearing.models import ClearingCdrRow, ClearingEventRow
from clearing.settlement.exports import EXPORT_COLUMNS, read_party_csv, reconcile, write_csv
from clearing.settlement.models import PeriodRow, StatementLineRow
from clearing.settlement.service import ENGINE_VERSION, PeriodError, SettlementService, StatementReport, _Accumulator
from clearing.settlement.terms import FeeRule, Terms, TermsError, round_amount
from hub.platform.clock import FixedClock
from tests.clearing.samples import cdr, cdr_token, credit_of, dump, price

D = Decimal
JAN = datetime(2026, 1, 1, tzinfo=UTC)


def make(
    cdr_id: str,
    amount: str = "4.00",
    *,
    cpo: tuple[str, str] = ("NL", "CPO"),
    emsp: tuple[str, str] = ("DE", "MSP"),
    end: str = "2026-01-15T11:00:00Z",
    currency: str = "EUR",
    energy: str = "16",
    incl: str | None = None,
) -> dict[str, Any]:
    stop = datetime.fromisoformat(end)
    start = (stop - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    doc = cdr(
        cdr_id,
        country_code=cpo[0],
        party_id=cpo[1],
        cdr_token=cdr_token(country_code=emsp[0], party_id=emsp[1]),
        start_date_time=start,
        end_date_time=end,
        currency=currency,
        total_energy=D(energy),
        total_cost=price(amount, incl),
        total_energy_cost=price(amount, incl),
    )
    doc["charging_periods"][0]["start_date_time"] = start
    return doc


async def take_in(db: AsyncSession, service: ClearingService, *cdrs: dict[str, Any]) -> None:
    await service.take_in(db, [IntakeItem(dump(c), "file") for c in cdrs])
    await db.commit()


async def approve(
    db: AsyncSession, service: ClearingService, *cdr_ids: str, cpo: tuple[str, str] = ("NL", "CPO")
) -> None:
    for cdr_id in cdr_ids:
        await service.set_commercial_state(db, *cpo, cdr_id, "approved", actor="msp:bob", reason="ok")
    await db.commit()


@pytest.fixture
def settlement(clock: FixedClock) -> SettlementService:
    return SettlementService(clock, batch_size=2)


async def read(sessions: async_sessionmaker[AsyncSession], s: SettlementService, label: str) -> list[StatementReport]:
    async with sessions() as session:
        return await s.statements(session, label)


def cdr_lines(statement: StatementReport) -> dict[str, Any]:
    return {line.details["cdr_id"]: line for line in statement.lines if line.kind == "cdr" and line.details}


async def test_close_builds_one_statement_per_pair_and_currency_with_lines_and_totals(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await take_in(
        db,
        service,
        make("A1", "4.00", incl="4.84"),
        make("A2", "2.50"),
        make("B1", "7.00", emsp=("FR", "EMP")),
        make("C1", "3.00", currency="CHF"),
        make("X1", "9.00", end="2026-02-01T00:00:00Z"),  # ends in February: not in January
    )
    await approve(db, service, "A1", "A2", "B1", "C1", "X1")
    result = await settlement.close_period(sessions, "2026-01")
    assert result.state == "closed"
    assert not result.already_closed
    assert sorted(result.statements) == ["NL/CPO|DE/MSP|CHF", "NL/CPO|DE/MSP|EUR", "NL/CPO|FR/EMP|EUR"]
    statements = {(st.emsp, st.currency): st for st in await read(sessions, settlement, "2026-01")}
    eur = statements["DE/MSP", "EUR"]
    assert set(cdr_lines(eur)) == {"A1", "A2"}
    assert (eur.cdr_count, eur.amount_excl_vat, eur.amount_incl_vat, eur.payable) == (2, D("6.5"), D("7.34"), D("7.34"))
    assert eur.total_energy == D(32)
    assert eur.engine_version == ENGINE_VERSION
    assert len(eur.input_hash) == 64
    line = cdr_lines(eur)["A1"]
    assert line.details["session_id"] == "S1"
    assert D(line.details["stated_incl_vat"]) == D("4.84")
    assert D(line.details["recomputed_excl_vat"]) == D("4.00")
    # The tariff has no VAT, so the hub computes 4.00 incl. VAT where the CDR states 4.84.
    assert (line.details["verification"], D(line.details["recomputed_incl_vat"])) == ("mismatch", D(4))
    assert statements["DE/MSP", "CHF"].payable == D(3)
    async with sessions() as session:
        x1 = await session.scalar(select(ClearingCdrRow.settlement_state).where(ClearingCdrRow.cdr_id == "X1"))
        a1 = await session.scalar(select(ClearingCdrRow.settlement_state).where(ClearingCdrRow.cdr_id == "A1"))
    assert (a1, x1) == ("settled", "unsettled")
    netting = result.netting
    assert D(netting["multilateral"]["EUR"]["NL/CPO"]) == D("14.34")
    assert D(netting["multilateral"]["EUR"]["DE/MSP"]) == D("-7.34")
    assert {(p["payer"], p["payee"], D(p["amount"])) for p in netting["payments"]} == {
        ("FR/EMP", "NL/CPO", D(7)),
        ("DE/MSP", "NL/CPO", D("7.34")),
        ("DE/MSP", "NL/CPO", D(3)),
    }


async def test_closing_twice_gives_the_same_statements_and_hashes(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await take_in(db, service, *(make(f"A{i}", f"{i}.10") for i in range(5)))
    await approve(db, service, *(f"A{i}" for i in range(5)))
    first = await settlement.close_period(sessions, "2026-01")
    lines_before = await db.scalar(select(func.count()).select_from(StatementLineRow))
    second = await settlement.close_period(sessions, "2026-01")
    assert second.already_closed
    assert second.statements == first.statements
    assert second.netting == first.netting
    assert await db.scalar(select(func.count()).select_from(StatementLineRow)) == lines_before == 5


async def test_a_crashed_close_is_redone_and_the_hash_follows_the_inputs(
    sessions: async_sessionmaker[AsyncSession], db: AsyncSession, service: ClearingService, clock: FixedClock
) -> None:
    await take_in(db, service, make("A1", "1.00"), make("A2", "2.00"))
    await take_in(db, service, make("A2", "2.00", cpo=("NL", "CP2")), make("A1", "1.00", cpo=("NL", "CP2")))
    await approve(db, service, "A1", "A2")
    await approve(db, service, "A2", "A1", cpo=("NL", "CP2"))
    # A crashed close leaves the period "closing" and nothing else (its one transaction rolled back).
    async with sessions() as session, session.begin():
        period = await SettlementService(clock).ensure_period(session, "2026-01")
        await session.execute(update(PeriodRow).where(PeriodRow.id == period.id).values(state="closing"))
    result = await SettlementService(clock, batch_size=1).close_period(sessions, "2026-01")
    assert (result.state, result.already_closed) == ("closed", False)
    # Same amounts, other CPO: the pair is an input, so the hashes differ.
    assert result.statements["NL/CPO|DE/MSP|EUR"] != result.statements["NL/CP2|DE/MSP|EUR"]
    assert len(set(result.statements.values())) == 2


async def test_concurrent_closes_of_one_period_close_it_once(
    sessions: async_sessionmaker[AsyncSession], db: AsyncSession, service: ClearingService, clock: FixedClock
) -> None:
    if db.bind.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers; the row lock is PostgreSQL's")
    await take_in(db, service, *(make(f"A{i}", "1.00") for i in range(6)))
    await approve(db, service, *(f"A{i}" for i in range(6)))
    async with sessions() as session, session.begin():
        await SettlementService(clock).ensure_period(session, "2026-01")
    first, second = await asyncio.gather(
        SettlementService(clock, batch_size=1).close_period(sessions, "2026-01"),
        SettlementService(clock, batch_size=1).close_period(sessions, "2026-01"),
    )
    assert first.statements == second.statements
    assert sorted([first.already_closed, second.already_closed]) == [False, True]
    assert (first.state, second.state) == ("closed", "closed")
    assert first.netting == second.netting
    assert D(first.netting["multilateral"]["EUR"]["NL/CPO"]) == D(6)
    assert await db.scalar(select(func.count()).select_from(StatementLineRow)) == 6


async def test_late_cdr_goes_to_the_next_period_and_pending_ones_wait_for_the_window(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
    clock: FixedClock,
) -> None:
    async with sessions() as session, session.begin():
        await settlement.set_terms(
            session,
            Terms(cpo="NL/CPO", emsp="DE/MSP", valid_from=JAN, currency="EUR", approval_window_days=10),
            actor="op:ann",
        )
    await take_in(db, service, make("P1", "1.00"), make("D1", "2.00"))
    await service.set_commercial_state(db, "NL", "CPO", "D1", "declined", actor="msp:bob", reason="not ours")
    await db.commit()
    jan = await settlement.close_period(sessions, "2026-01")
    [statement] = await read(sessions, settlement, "2026-01")
    lines = cdr_lines(statement)
    assert (lines["P1"].included, lines["P1"].note) == (False, "awaiting_approval")
    assert (lines["D1"].included, lines["D1"].note) == (False, "declined")
    assert (statement.cdr_count, statement.excluded_count, statement.payable) == (0, 2, D(0))
    assert jan.statements
    # A CDR of January arriving after the close, and the window passing for P1: both settle in February, late.
    await take_in(db, service, make("L1", "5.00", end="2026-01-31T23:00:00Z"))
    await approve(db, service, "L1")
    clock.advance(timedelta(days=11))
    await settlement.close_period(sessions, "2026-02")
    [feb] = await read(sessions, settlement, "2026-02")
    lines = cdr_lines(feb)
    assert set(lines) == {"L1", "P1"}  # the declined D1 is listed once, in its own period
    assert lines["L1"].note == "approved, late"
    assert lines["P1"].note == "auto_approved, late"
    assert feb.payable == D(6)
    async with sessions() as session:
        events = (
            await session.scalars(
                select(ClearingEventRow)
                .join(ClearingCdrRow, ClearingCdrRow.id == ClearingEventRow.record_id)
                .where(ClearingCdrRow.cdr_id == "P1", ClearingEventRow.dimension.in_(["commercial", "settlement"]))
                .order_by(ClearingEventRow.id)
            )
        ).all()
    assert [(e.dimension, e.from_state, e.to_state) for e in events] == [
        ("commercial", "pending", "approved"),
        ("settlement", "unsettled", "settled"),
    ]
    assert "approval window of 10 days" in events[0].reason
    # The declined D1 stays unsettled but is not listed again: a period with nothing else has no statement.
    assert (await settlement.close_period(sessions, "2026-03")).statements == {}


async def test_periods_close_in_order(
    sessions: async_sessionmaker[AsyncSession], db: AsyncSession, settlement: SettlementService
) -> None:
    async with sessions() as session, session.begin():
        await settlement.ensure_period(session, "2026-01")
    with pytest.raises(PeriodError, match="close period 2026-01 first"):
        await settlement.close_period(sessions, "2026-02")
    with pytest.raises(PeriodError, match="YYYY-MM"):
        await settlement.close_period(sessions, "January")


async def test_credit_cdr_offsets_in_the_same_period_and_as_a_credit_line_in_the_next(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    same, later = make("S1", "4.00"), make("O1", "6.00")
    await take_in(db, service, same, later, credit_of(same))
    await approve(db, service, "O1")
    await settlement.close_period(sessions, "2026-01")
    [jan] = await read(sessions, settlement, "2026-01")
    lines = cdr_lines(jan)
    assert (lines["S1"].amount_incl_vat, lines["S1-C"].amount_incl_vat) == (D(4), D(-4))
    assert lines["S1"].note == "credited"
    assert D(lines["S1-C"].details["recomputed_excl_vat"]) == D(-4)
    assert jan.payable == D(6)
    await take_in(db, service, credit_of(later))
    await settlement.close_period(sessions, "2026-02")
    [feb] = await read(sessions, settlement, "2026-02")
    assert [(k, v.amount_incl_vat, v.note) for k, v in cdr_lines(feb).items()] == [("O1-C", D(-6), "credit, late")]
    assert feb.payable == D(-6)
    assert D((await settlement.close_period(sessions, "2026-02")).netting["multilateral"]["EUR"]["DE/MSP"]) == D(6)


async def test_fees_follow_the_terms_and_rounding_happens_only_at_lines(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    fees = {
        "per_session": FeeRule(rate=D("0.10"), payer="cpo"),
        "per_kwh": FeeRule(rate=D("0.015"), payer="emsp"),
        "percent": FeeRule(rate=D("1.5"), payer="emsp"),
        "per_period": FeeRule(rate=D("5"), payer="cpo"),
    }
    async with sessions() as session, session.begin():
        await settlement.set_terms(
            session, Terms(cpo="NL/CPO", emsp="DE/MSP", valid_from=JAN, currency="EUR", fees=fees), actor="op:ann"
        )
    # Three CDRs of 1.005 each: rounded per line 1.01 + 1.01 + 1.01 = 3.03 (rounding the sum would give 3.02).
    await take_in(db, service, *(make(f"R{i}", "1.005", energy="3.3") for i in range(3)))
    await approve(db, service, "R0", "R1", "R2")
    result = await settlement.close_period(sessions, "2026-01")
    [st] = await read(sessions, settlement, "2026-01")
    assert [line.amount_incl_vat for line in cdr_lines(st).values()] == [D("1.01")] * 3
    assert st.amount_excl_vat == D("3.03")
    fee_lines = {line.details["fee"]: line for line in st.lines if line.kind == "fee" and line.details}
    assert (fee_lines["per_session"].quantity, fee_lines["per_session"].amount_excl_vat) == (D(3), D("0.30"))
    # 9.9 kWh * 0.015 = 0.1485 -> 0.15; 1.5 % of 3.03 = 0.04545 -> 0.05; once per period 5.
    assert fee_lines["per_kwh"].amount_excl_vat == D("0.15")
    assert fee_lines["percent"].amount_excl_vat == D("0.05")
    assert fee_lines["per_period"].amount_excl_vat == D(5)
    assert (st.fees_cpo, st.fees_emsp) == (D("5.30"), D("0.20"))
    netting = result.netting
    assert D(netting["hub_fees"]["EUR"]) == D("5.50")
    assert D(netting["multilateral_after_fees"]["EUR"]["NL/CPO"]) == D("3.03") - D("5.30")
    assert sum(D(p["amount"]) for p in netting["payments"] if p["payee"] == "HUB") == D("5.50")


def test_round_amount_rules_and_terms_checks() -> None:
    assert round_amount(D("1.005")) == D("1.01")
    assert round_amount(D("1.005"), "half_even") == D("1.00")
    assert round_amount(D("-1.005")) == D("-1.01")
    assert round_amount(D("2.5"), decimals=0) == D(3)
    with pytest.raises(TermsError, match="rounding"):
        Terms(cpo="NL/CPO", emsp="DE/MSP", valid_from=JAN, currency="EUR", rounding="up").check()
    with pytest.raises(TermsError, match="COUNTRY_CODE/PARTY_ID"):
        Terms(cpo="NLCPO", emsp="DE/MSP", valid_from=JAN, currency="EUR").check()
    with pytest.raises(TermsError, match="unknown fee"):
        Terms(
            cpo="NL/CPO", emsp="DE/MSP", valid_from=JAN, currency="EUR", fees={"x": FeeRule(rate=D(1), payer="cpo")}
        ).check()


async def test_terms_are_effective_dated_and_their_tolerance_sorts_the_verification(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    async with sessions() as session, session.begin():
        for valid_from, tolerance in (
            (JAN - timedelta(days=60), None),
            (JAN, D("1")),
            (JAN + timedelta(days=40), None),
        ):
            await settlement.set_terms(
                session,
                Terms(cpo="NL/CPO", emsp="DE/MSP", valid_from=valid_from, currency="EUR", tolerance=tolerance),
                actor="op:ann",
            )
    async with sessions() as session:
        assert len(await settlement.list_terms(session)) == 3
        terms_id, terms = await settlement.terms_for(session, "NL/CPO", "DE/MSP", JAN + timedelta(days=3))
        assert (terms_id is not None, terms.tolerance) == (True, D(1))
        assert (await settlement.terms_for(session, "NL/CPO", "FR/EMP", JAN))[0] is None
    await take_in(db, service, make("M1", "4.50"))  # 0.50 above the hub's 4.00: a mismatch at the default 0.01
    await approve(db, service, "M1")
    await settlement.close_period(sessions, "2026-01")
    [st] = await read(sessions, settlement, "2026-01")
    assert cdr_lines(st)["M1"].details["verification"] == "within_tolerance"


async def test_disputes_hold_the_cdr_and_each_resolution_is_recorded(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    originals = [make("K1", "4.00"), make("K2", "5.00"), make("K3", "6.00")]
    await take_in(db, service, *originals)
    await approve(db, service, "K1", "K2", "K3")
    ids = {}
    async with sessions() as session, session.begin():
        for cdr_id in ("K1", "K2", "K3"):
            ids[cdr_id] = await settlement.open_dispute(session, "NL", "CPO", cdr_id, actor="msp:bob", reason="price")
        with pytest.raises(PeriodError, match="already has an open dispute"):
            await settlement.open_dispute(session, "NL", "CPO", "K1", actor="msp:bob", reason="again")
    await settlement.close_period(sessions, "2026-01")
    [jan] = await read(sessions, settlement, "2026-01")
    assert {k: (v.included, v.note) for k, v in cdr_lines(jan).items()} == {
        "K1": (False, "disputed"),
        "K2": (False, "disputed"),
        "K3": (False, "disputed"),
    }
    async with sessions() as session, session.begin():
        with pytest.raises(PeriodError, match="no credit CDR"):
            await settlement.resolve_dispute(session, ids["K1"], "credit", actor="cpo:carol", reason="credit it")
    await take_in(db, service, credit_of(originals[0]))
    async with sessions() as session, session.begin():
        credited = await settlement.resolve_dispute(session, ids["K1"], "credit", actor="cpo:carol", reason="sorry")
        adjusted = await settlement.resolve_dispute(
            session, ids["K2"], "adjustment", actor="cpo:carol", reason="tariff was 10% lower", amount=D("-0.50")
        )
        rejected = await settlement.resolve_dispute(session, ids["K3"], "rejection", actor="cpo:carol", reason="ok")
        with pytest.raises(PeriodError, match="already rejected"):
            await settlement.resolve_dispute(session, ids["K3"], "rejection", actor="x", reason="y")
    assert (credited.state, adjusted.state, rejected.state) == ("credited", "adjusted", "rejected")
    await settlement.close_period(sessions, "2026-02")
    [feb] = await read(sessions, settlement, "2026-02")
    lines = cdr_lines(feb)
    assert {k: v.amount_incl_vat for k, v in lines.items()} == {"K1": D(4), "K2": D(5), "K3": D(6), "K1-C": D(-4)}
    [adjustment] = [line for line in feb.lines if line.kind == "adjustment"]
    assert (adjustment.amount_incl_vat, adjustment.note) == (D("-0.50"), "tariff was 10% lower")
    assert (feb.adjustments, feb.payable) == (D("-0.50"), D("10.50"))
    async with sessions() as session:
        events = (
            await session.execute(
                select(ClearingCdrRow.cdr_id, ClearingEventRow)
                .join(ClearingCdrRow, ClearingCdrRow.id == ClearingEventRow.record_id)
                .where(ClearingEventRow.dimension == "dispute")
                .order_by(ClearingEventRow.id)
            )
        ).all()
    assert [(cdr_id, e.from_state, e.to_state, e.actor, e.reason) for cdr_id, e in events] == [
        ("K1", None, "open", "msp:bob", "price"),
        ("K2", None, "open", "msp:bob", "price"),
        ("K3", None, "open", "msp:bob", "price"),
        ("K1", "open", "credited", "cpo:carol", "sorry"),
        ("K2", "open", "adjusted", "cpo:carol", "tariff was 10% lower"),
        ("K3", "open", "rejected", "cpo:carol", "ok"),
    ]
    assert events[3][1].details["credit_cdr_id"] == "K1-C"


async def test_csv_export_columns_and_values_and_reconciliation(
    sessions: async_sessionmaker[AsyncSession],
    db: AsyncSession,
    service: ClearingService,
    settlement: SettlementService,
) -> None:
    await take_in(db, service, make("E1", "4.00", incl="4.84"), make("E2", "2.00"), make("E3", "3.00"))
    await approve(db, service, "E1", "E2", "E3")
    await settlement.close_period(sessions, "2026-01")
    statements = await read(sessions, settlement, "2026-01")
    out = io.StringIO()
    assert write_csv(statements, out) == 4
    text = out.getvalue().splitlines()
    assert text[0] == ",".join(EXPORT_COLUMNS)
    rows = [dict(zip(EXPORT_COLUMNS, line.split(","), strict=True)) for line in text[1:]]
    head, first = rows[0], rows[1]
    assert (head["kind"], head["cpo"], head["emsp"], head["currency"], head["payable"]) == (
        "statement",
        "NL/CPO",
        "DE/MSP",
        "EUR",
        "9.84",
    )
    assert head["input_hash"] == statements[0].input_hash
    assert (first["kind"], first["cdr_id"], first["session_id"], first["included"]) == ("cdr", "E1", "S1", "true")
    assert (D(first["stated_incl_vat"]), first["amount_incl_vat"], first["verification"]) == (
        D("4.84"),
        "4.84",
        "mismatch",
    )
    assert first["end_date_time"] == "2026-01-15T11:00:00Z"
    theirs = read_party_csv("cdr_id,amount\nE1,4.84\nE2,2.50\nZ9,1.00\nZ9,1.00\n")
    result = reconcile(statements, "DE/MSP", "2026-01", theirs)
    assert result.matched == ["E1"]
    assert [(d.cdr_id, d.ours, d.theirs, d.difference) for d in result.amount_differs] == [
        ("E2", D(2), D("2.50"), D("0.50"))
    ]
    assert result.missing_at_hub == ["Z9"]
    assert result.missing_at_counterparty == ["E3"]
    assert result.duplicates == ["Z9"]


def test_the_line_digest_ignores_order_and_follows_every_input() -> None:
    terms = Terms(cpo="NL/CPO", emsp="DE/MSP", valid_from=JAN, currency="EUR")
    lines = [{"kind": "cdr", "key": ["NL/CPO", f"C{i}"], "amount": D(i)} for i in range(4)]
    forward, backward, changed = (_Accumulator(1, None, terms) for _ in range(3))
    for line in lines:
        forward.digest(line)
    for line in reversed(lines):
        backward.digest(line)
    for line in [*lines[:3], {**lines[3], "amount": D("3.01")}]:
        changed.digest(line)
    assert (forward.digest_sum, forward.line_count) == (backward.digest_sum, backward.line_count)
    assert changed.digest_sum != forward.digest_sum
