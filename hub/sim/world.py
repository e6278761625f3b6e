"""The demo world: the hub on the embedded default plus simulated CPOs and eMSPs, all in one process.

`run_demo` serves the hub (uvicorn on a pre-bound loopback socket), registers every platform through the real
credentials handshake, runs a compressed day of roaming (commands, sessions, CDRs through the hub), then takes the
CDRs into clearing, sets terms for every CPO/eMSP pair, closes the period and returns what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import uvicorn

from clearing.intake import ClearingService, run_sync
from clearing.settlement.service import SettlementService, StatementReport, month_bounds, previous_month
from clearing.settlement.terms import FeeRule, Terms
from hub.app import create_app, wrap
from hub.migrate import upgrade
from hub.platform.clock import SystemClock
from hub.platform.db import create_engine, create_sessionmaker
from hub.settings import Settings, load_settings
from hub.sim import pricing
from hub.sim.platform import Party, SimCpo, SimEmsp, SimError, SimPlatform

CPO_COUNTRIES = ("NL", "BE", "FR", "DE", "AT", "DK", "SE", "NO", "ES")
EMSP_COUNTRIES = ("DE", "NL", "FR", "BE", "IT", "CH", "PL", "PT", "FI")
#: Standard VAT rates (percent) the demo's domestic agreements are configured with: demo data, not tax advice.
DEMO_VAT_RATES = {"NL": Decimal(21), "BE": Decimal(21), "FR": Decimal(20), "DE": Decimal(19), "AT": Decimal(20),
                  "DK": Decimal(25), "SE": Decimal(25), "NO": Decimal(25), "ES": Decimal(21)}  # fmt: skip


@dataclass(frozen=True)
class DemoOptions:
    cpos: int = 3
    emsps: int = 3
    sessions: int = 30
    port: int = 0
    mismatch_every: int = 7  # every n-th CDR of a CPO states a wrong price (0: never)
    seed: int = 2026
    concurrency: int = 6


@dataclass
class DemoResult:
    hub_url: str
    admin_url: str
    admin_key: str  # an admin operator key: the admin API's Bearer key and the dashboard's sign-in key
    dashboard_url: str
    folder: str
    period: str
    platforms: list[dict[str, Any]] = field(default_factory=list)
    sessions_requested: int = 0
    sessions_completed: int = 0
    sessions_failed: int = 0
    errors: list[str] = field(default_factory=list)
    cdrs_sent: int = 0
    cdrs_received: int = 0
    mismatches_sent: int = 0
    intake: dict[str, Any] = field(default_factory=dict)
    period_state: str = ""
    statements: list[StatementReport] = field(default_factory=list)
    netting: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def demo_settings(folder: Path, port: int) -> Settings:
    """The embedded default in ``folder``: SQLite, in-process jobs, no Redis, private peers allowed."""
    env = {
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'ocpi-hub.db'}",
        "HUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HUB_ALLOW_PRIVATE_PEERS": "true",
        "HUB_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "HUB_SECRET_KEY": secrets.token_urlsafe(32),
        "HUB_ROUTING_POLL": "0.5",
    }
    return load_settings(env)


def bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def prepare(folder: Path, port: int) -> tuple[Settings, socket.socket]:
    """Bind the hub's socket and migrate the database (synchronous: Alembic runs its own event loop)."""
    sock = bind(port)
    settings = demo_settings(folder, sock.getsockname()[1])
    upgrade(settings.database_url)
    return settings, sock


Progress = Callable[[str, int, int], None]


async def run_demo(
    settings: Settings,
    sock: socket.socket,
    options: DemoOptions,
    *,
    progress: Progress | None = None,
    keep_running: Callable[[DemoResult], Awaitable[None]] | None = None,
) -> DemoResult:
    """Serve the hub, run the simulated world and the clearing.

    With ``keep_running``, it is awaited with the result and everything stays up until the server is stopped (Ctrl-C).
    """
    began = asyncio.get_running_loop().time()
    report = progress or (lambda _stage, _done, _total: None)
    engine = create_engine(settings.database_url)
    hub_app = create_app(settings, engine=engine)
    registry = hub_app.state.runtime.registry
    app = wrap(hub_app)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="error", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    database = settings.database_url.split("///", 1)[-1]
    now = datetime.now(UTC)
    period = previous_month(now)
    _, period_end = month_bounds(period)
    day_start = period_end - timedelta(days=1)
    result = DemoResult(
        hub_url=settings.public_url,
        admin_url=f"{settings.public_url}/admin/api",
        admin_key=settings.admin_token or "",
        dashboard_url=f"{settings.public_url}/ui/",
        folder=str(Path(database).parent),
        period=period,
    )
    rng = random.Random(options.seed)  # noqa: S311 - simulated kWh and pairings, not security
    cpos = [
        SimCpo(
            Party(CPO_COUNTRIES[i % len(CPO_COUNTRIES)], f"CP{i + 1}", "CPO", f"Demo CPO {i + 1}"),
            day_start=day_start,
            mismatch_every=options.mismatch_every,
        )
        for i in range(options.cpos)
    ]
    emsps = [
        SimEmsp(
            Party(EMSP_COUNTRIES[i % len(EMSP_COUNTRIES)], f"MS{i + 1}", "EMSP", f"Demo eMSP {i + 1}"),
            day_start=day_start,
        )
        for i in range(options.emsps)
    ]
    platforms: list[SimPlatform] = [*cpos, *emsps]
    sessions = create_sessionmaker(engine)
    try:
        for index, platform in enumerate(platforms):
            await platform.start()
            _, token_a = await registry.invite(platform.party.name)
            await platform.register(settings.versions_url, token_a)
            result.platforms.append(
                {"name": platform.party.name, "party": platform.party.ref, "role": platform.party.role,
                 "versions_url": platform.versions_url, "registered": platform.token_c is not None}
            )  # fmt: skip
            report("register", index + 1, len(platforms))
        for platform in platforms:
            if isinstance(platform, SimCpo | SimEmsp):
                await platform.publish()
        plans: dict[str, tuple[Decimal, int]] = {}

        def plan(session_id: str) -> tuple[Decimal, int]:
            if session_id not in plans:
                kwh = Decimal(rng.randint(300, 4500)) / 100
                # At 3.7 to 11 kW (below the 22 kW connector), plus some idle minutes at the end.
                charging = math.ceil(float(kwh) / rng.uniform(3.7, 11.0) * 60)
                plans[session_id] = (kwh, charging + rng.randint(0, 30))
            return plans[session_id]

        for cpo in cpos:
            cpo.plan = plan
        pairs = [(rng.choice(emsps), rng.choice(cpos), rng.randint(1, 3)) for _ in range(options.sessions)]
        result.sessions_requested = len(pairs)
        gate = asyncio.Semaphore(options.concurrency)
        done = 0

        async def one(emsp: SimEmsp, cpo: SimCpo, token: int) -> None:
            nonlocal done
            async with gate:
                try:
                    await emsp.charge(cpo, token)
                    result.sessions_completed += 1
                except (SimError, TimeoutError) as exc:
                    result.sessions_failed += 1
                    result.errors.append(f"{emsp.party.ref} at {cpo.party.ref}: {exc!r}"[:400])
                done += 1
                report("sessions", done, len(pairs))

        await asyncio.gather(*(one(*pair) for pair in pairs))
        result.cdrs_sent = sum(c.cdrs_sent for c in cpos)
        result.cdrs_received = sum(len(e.cdrs) for e in emsps)
        result.mismatches_sent = sum(c.mismatches_sent for c in cpos)

        report("clearing", 0, 3)
        clock = SystemClock()
        intake = await run_sync(sessions, ClearingService(clock))
        result.intake = msgspec.to_builtins(intake)
        report("clearing", 1, 3)
        settlement = SettlementService(clock)
        period_start, _ = month_bounds(period)
        async with sessions() as session, session.begin():
            for cpo in cpos:
                for emsp in emsps:
                    # The demo operator configures each agreement's VAT regime (ADR 0209; the engine never infers
                    # it): domestic VAT between parties of one country, reverse charge across borders.
                    domestic = cpo.party.country_code == emsp.party.country_code
                    terms = Terms(
                        cpo=cpo.party.ref, emsp=emsp.party.ref, valid_from=period_start, currency="EUR",
                        approval_window_days=0,
                        fees={"per_session": FeeRule(rate=Decimal("0.05"), payer="cpo"),
                              "percent": FeeRule(rate=Decimal("0.5"), payer="emsp")},
                        vat_regime="domestic" if domestic else "reverse_charge",
                        vat_rate=DEMO_VAT_RATES.get(cpo.party.country_code, pricing.VAT) if domestic else None,
                    )  # fmt: skip
                    await settlement.set_terms(session, terms, actor="demo")
        report("clearing", 2, 3)
        closed = await settlement.close_period(sessions, period, actor="demo")
        result.period_state = closed.state
        result.netting = closed.netting
        async with sessions() as session:
            result.statements = await settlement.statements(session, period)
        report("clearing", 3, 3)
        result.seconds = asyncio.get_running_loop().time() - began
        if keep_running is not None:
            await keep_running(result)
            # Until the server stops: uvicorn takes Ctrl-C (SIGINT/SIGTERM), shuts down, then raises it again.
            await task
        return result
    finally:
        for platform in platforms:
            with contextlib.suppress(Exception):
                await platform.stop()
        server.should_exit = True
        await task
        sock.close()
        await engine.dispose()
