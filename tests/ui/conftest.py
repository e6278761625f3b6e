"""Fixtures of the dashboard tests: the real hub on loopback with real data, and operator keys per role.

``world`` registers a CPO and an eMSP platform through the credentials handshake, sends a request through the hub
under a known correlation id, makes a broadcast fail at the eMSP until it is a failed delivery, takes three CDRs into
clearing (one with a wrong price) and closes their period, all with the services the hub itself uses.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clearing.intake import ClearingService
from clearing.settlement.service import SettlementService
from clearing.settlement.terms import FeeRule, Terms
from hub.admin.service import create_operator_key
from hub.parties.models import Platform
from hub.platform.clock import FixedClock
from hub.platform.db import create_sessionmaker
from routing import messagelog, outbox
from tests.clearing.samples import NOW
from tests.clearing.test_settlement import make, take_in
from tests.hub.objects import builders
from tests.peers import PeerConfig, PeerPlatform
from tests.support.hub_server import HubServer

CORRELATION_ID = "ui-trace-1"
PERIOD = "2026-01"
CPA, EMA = ("NL", "CPA"), ("DE", "EMA")


@dataclass
class World:
    hub: HubServer
    cpo: PeerPlatform
    emsp: PeerPlatform
    cpo_platform_id: int
    emsp_platform_id: int
    sessions: async_sessionmaker[AsyncSession]


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def operator_key(hub: HubServer, name: str, role: str) -> str:
    sessions = create_sessionmaker(hub.engine)
    async with sessions() as session, session.begin():
        _, plain = await create_operator_key(session, name=name, role=role, now=NOW)
    return plain


async def _clearing(sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = FixedClock(NOW)
    settlement = SettlementService(clock)
    fees = {"per_session": FeeRule(rate=Decimal("0.10"), payer="cpo")}
    terms = Terms(cpo="NL/CPA", emsp="DE/EMA", valid_from=datetime(2026, 1, 1, tzinfo=UTC), currency="EUR",
                  approval_window_days=0, fees=fees)  # fmt: skip
    async with sessions() as session, session.begin():
        await settlement.set_terms(session, terms, actor="test")
    async with sessions() as session:
        await take_in(
            session,
            ClearingService(clock),
            make("A1", "4.00", cpo=CPA, emsp=EMA),
            make("A2", "2.00", cpo=CPA, emsp=EMA),
            make("M1", "5.00", cpo=CPA, emsp=EMA),  # 16 kWh at 0.25: the hub computes 4.00, a mismatch
        )
    await settlement.close_period(sessions, PERIOD, actor="test")


@pytest.fixture
async def world(hub: HubServer, invite: Callable[..., Awaitable[str]]) -> AsyncIterator[World]:
    sessions = create_sessionmaker(hub.engine)
    async with PeerPlatform() as cpo, PeerPlatform(PeerConfig(roles=[("DE", "EMA", "EMSP", "eMSP A")])) as emsp:
        await cpo.register(hub.versions_url, await invite("CPO platform"))
        await emsp.register(hub.versions_url, await invite("eMSP platform"))
        async with sessions() as session:
            platforms = {
                name: pid for pid, name in (await session.execute(select(Platform.id, Platform.name))).tuples()
            }
        answer = await emsp.request(
            "GET", "locations", "NL/CPA/LOC1", interface="SENDER",
            headers={"X-Correlation-ID": CORRELATION_ID, "OCPI-from-country-code": "DE", "OCPI-from-party-id": "EMA",
                     "OCPI-to-country-code": "NL", "OCPI-to-party-id": "CPA"},
        )  # fmt: skip
        assert answer.status in (200, 404), answer.envelope

        async def settled() -> bool:
            async with sessions() as session:
                counts = await outbox.count_by_status(session)
            return not any(counts[s] for s in outbox.OPEN_STATUSES)

        await until(settled)  # the HubClientInfo pushes of the registrations are through: only the broadcast fails
        # The eMSP answers every push with HTTP 500: after its three attempts the broadcast is a failed delivery.
        emsp.fail_all = 500
        location = builders.location("LOC1", country_code="NL", party_id="CPA")
        put = await cpo.request(
            "PUT", "locations", "NL/CPA/LOC1", interface="RECEIVER", body=location,
            headers={"OCPI-from-country-code": "NL", "OCPI-from-party-id": "CPA",
                     "OCPI-to-country-code": "NL", "OCPI-to-party-id": "HUB"},
        )  # fmt: skip
        assert put.status in (200, 201), put.envelope

        async def failed() -> bool:
            async with sessions() as session:
                rows = await outbox.list_messages(session, status="failed")
            return any(row.object_key.startswith("locations/NL/CPA/LOC1") for row in rows)

        async def logged() -> bool:
            async with sessions() as session:
                return len(await messagelog.search(session, correlation_id=CORRELATION_ID)) >= 2

        await until(failed)
        await until(logged)
        emsp.fail_all = None  # a re-delivery from the dashboard now succeeds
        await _clearing(sessions)
        yield World(hub, cpo, emsp, platforms["CPO platform"], platforms["eMSP platform"], sessions)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the browser tests save their screenshots: ``HUB_UI_SCREENSHOTS`` to keep them, else the test's tmp."""
    folder = Path(os.environ.get("HUB_UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
