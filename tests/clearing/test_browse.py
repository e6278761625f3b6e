"""Listings for operator screens: periods with their statement counts, CDR records with filters (both dialects)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clearing.browse import explain_price, list_cdrs, list_periods, statement_parties
from clearing.intake import ClearingService
from clearing.settlement.service import SettlementService
from clearing.settlement.terms import Terms, TermsError
from hub.platform.clock import FixedClock
from tests.clearing.test_settlement import make, take_in


async def test_periods_and_cdrs(sessions: async_sessionmaker[AsyncSession], clock: FixedClock) -> None:
    settlement = SettlementService(clock)
    terms = Terms(cpo="NL/CPO", emsp="DE/MSP", valid_from=datetime(2026, 1, 1, tzinfo=UTC), currency="EUR",
                  approval_window_days=0)  # fmt: skip
    async with sessions() as session, session.begin():
        await settlement.set_terms(session, terms, actor="test")
    async with sessions() as session:
        await take_in(session, ClearingService(clock), make("A1", "4.00"), make("M1", "5.00"),
                      make("F1", "4.00", cpo=("FR", "CPF"), emsp=("DE", "MSP")))  # fmt: skip
        assert await list_periods(session) == []
    await settlement.close_period(sessions, "2026-01", actor="test")

    async with sessions() as session:
        [period] = await list_periods(session)
        assert (period.label, period.state, period.closed_by, period.statements) == ("2026-01", "closed", "test", 2)
        assert await statement_parties(session, ["2026-01", "2025-12"]) == {
            "2026-01": ["DE/MSP", "FR/CPF", "NL/CPO"], "2025-12": [],
        }  # fmt: skip
        everything = await list_cdrs(session)
        assert [c.cdr_id for c in everything] == ["F1", "M1", "A1"], "the latest taken in first"
        assert {c.cdr_id: c.pricing_state for c in everything}["M1"] == "mismatch"
        assert [c.cdr_id for c in await list_cdrs(session, party="nl/cpo")] == ["M1", "A1"]
        assert [c.cdr_id for c in await list_cdrs(session, party="DE/MSP")] == ["F1", "M1", "A1"], "as the eMSP"
        assert [c.cdr_id for c in await list_cdrs(session, pricing_state="mismatch")] == ["M1"]
        [one] = await list_cdrs(session, cdr_id="A1")
        assert (one.country_code, one.party_id, one.emsp, one.currency) == ("NL", "CPO", "DE/MSP", "EUR")
        assert len(await list_cdrs(session, limit=1)) == 1
        with pytest.raises(TermsError):
            await list_cdrs(session, party="NLCPO")


async def test_a_matched_cdrs_price_is_explained_again(db: AsyncSession, service: ClearingService) -> None:
    await take_in(db, service, make("A1", "4.00"))
    report = await service.report(db, "NL", "CPO", "A1")
    assert report.price is not None
    assert (report.price["outcome"], report.price["explanation"]) == ("matched", None), "kept only for differences"
    explanation = await explain_price(db, "nl", "cpo", "A1", time_zone=report.price["time_zone"])
    assert explanation is not None
    [line] = explanation["lines"]
    assert (line["dimension"], line["volume"], line["excl_vat"]) == ("ENERGY", 16, 4)
    assert await explain_price(db, "NL", "CPO", "NOPE", time_zone="UTC") is None
