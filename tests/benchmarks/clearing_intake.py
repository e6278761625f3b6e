"""Clearing intake throughput on PostgreSQL: CDRs per second through intake, matching, validation and pricing.

Not a test (pytest does not collect ``tests/benchmarks``). Run it with the services up (``make services``):

    .venv/bin/python -m tests.benchmarks.clearing_intake [--cdrs 10000] [--batch-size 500] [--url URL]

It creates a scratch database next to ``HUB_TEST_DATABASE_URL`` (default: the local postgres), migrates it, stores a
generated world the way routing would have (locations, tokens, tariffs with two versions each, sessions, CDRs: about
5 % credit CDRs, 10 % with a wrong price, 5 % without a stored session), then runs the same ``run_sync`` the worker
and ``ocpi-hub clearing sync`` run, and reports in one run:

* the CPU-only rate (parse, rules and pricing in memory, no database) as the ceiling,
* the end-to-end rate (read from ``cdrs``, match, validate, price, write records, findings, price checks, events),
* their ratio, the batch size, and the peak resident memory before and after the sync (bounded memory: it must
  not grow with the number of CDRs).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.checks import evaluate
from clearing.document import parse_cdr
from clearing.facts import StoredObject, StoreFacts
from clearing.intake import ClearingService, IntakeSummary, run_sync
from clearing.matching import resolve_tariffs
from clearing.models import ClearingCdrRow
from clearing.pricing import decode_cdr, decode_tariff, price_cdr
from hub.migrate import upgrade
from hub.objects.models import CdrRow, LocationRow, SessionRow, TariffRow, TariffVersionRow, TokenRow
from hub.platform.clock import FixedClock
from hub.platform.db import create_engine, create_sessionmaker

ADMIN_URL = os.environ.get("HUB_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
ENCODER = msgspec.json.Encoder(decimal_format="number")
# The hub's clock: after the last generated session (10,000 CDRs of 37 minutes apart span about 260 days).
NOW = datetime(2027, 1, 1, tzinfo=UTC)
LOCATIONS = 50
TOKENS = 1000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def tariff(number: int, version: int) -> dict[str, Any]:
    day, night = (Decimal("0.35"), Decimal("0.25")) if version == 1 else (Decimal("0.39"), Decimal("0.29"))
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": f"T{number}",
        "currency": "EUR",
        "elements": [
            {"price_components": [{"type": "FLAT", "price": Decimal("0.50"), "vat": Decimal(21), "step_size": 1}]},
            {
                "price_components": [{"type": "ENERGY", "price": night, "vat": Decimal(21), "step_size": 1}],
                "restrictions": {"start_time": "22:00", "end_time": "07:00"},
            },
            {
                "price_components": [
                    {"type": "ENERGY", "price": day, "vat": Decimal(21), "step_size": 1},
                    {"type": "PARKING_TIME", "price": Decimal("2.00"), "vat": Decimal(21), "step_size": 300},
                ]
            },
        ],
        # Version 2 takes effect on 2026-01-15: CDRs before that are priced with version 1.
        "last_updated": "2025-12-01T00:00:00Z" if version == 1 else "2026-01-15T00:00:00Z",
    }


def location(number: int) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": f"L{number}",
        "publish": True,
        "address": "Main Street 1",
        "city": "Utrecht",
        "country": "NLD",
        "coordinates": {"latitude": "52.09074", "longitude": "5.12142"},
        "evses": [
            {
                "uid": f"E{number}",
                "evse_id": f"NL*CPO*E{number}",
                "status": "AVAILABLE",
                "connectors": [
                    {
                        "id": "1",
                        "standard": "IEC_62196_T2",
                        "format": "SOCKET",
                        "power_type": "AC_3_PHASE",
                        "max_voltage": 230,
                        "max_amperage": 32,
                        "tariff_ids": [f"T{number}"],
                        "last_updated": "2025-12-01T00:00:00Z",
                    }
                ],
                "last_updated": "2025-12-01T00:00:00Z",
            }
        ],
        "time_zone": "Europe/Amsterdam",
        "last_updated": "2025-12-01T00:00:00Z",
    }


def token(number: int) -> dict[str, Any]:
    return {
        "country_code": "DE",
        "party_id": "MSP",
        "uid": f"TOK{number}",
        "type": "RFID",
        "contract_id": f"DE-MSP-C{number}",
        "issuer": "MSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2025-12-01T00:00:00Z",
    }


def cdr_token(number: int) -> dict[str, Any]:
    return {"country_code": "DE", "party_id": "MSP", "uid": f"TOK{number}", "type": "RFID",
            "contract_id": f"DE-MSP-C{number}"}  # fmt: skip


def session(number: int, start: datetime, end: datetime, place: int, who: int) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": f"S{number}",
        "start_date_time": iso(start),
        "end_date_time": iso(end),
        "kwh": Decimal(10),
        "cdr_token": cdr_token(who),
        "auth_method": "WHITELIST",
        "location_id": f"L{place}",
        "evse_uid": f"E{place}",
        "connector_id": "1",
        "currency": "EUR",
        "status": "COMPLETED",
        "last_updated": iso(end),
    }


def cdr(number: int, start: datetime, place: int, who: int, tariff_doc: dict[str, Any]) -> dict[str, Any]:
    """A CDR of 30-150 min: two charging periods and some parking, priced with ``tariff_doc`` (UTC+1 in winter)."""
    minutes = 30 + number % 120
    charging = minutes - minutes // 5
    middle = start + timedelta(minutes=charging // 2)
    parked = start + timedelta(minutes=charging)
    end = start + timedelta(minutes=minutes)
    hours = [Decimal(charging // 2) / 60, Decimal(charging - charging // 2) / 60, Decimal(minutes // 5) / 60]
    kilowatts = Decimal(7 + number % 4)
    energy = [(kilowatts * hours[0]).quantize(Decimal("0.001")), (kilowatts * hours[1]).quantize(Decimal("0.001"))]
    doc: dict[str, Any] = {
        "country_code": "NL",
        "party_id": "CPO",
        "id": f"CDR{number}",
        "start_date_time": iso(start),
        "end_date_time": iso(end),
        "session_id": f"S{number}",
        "cdr_token": cdr_token(who),
        "auth_method": "WHITELIST",
        "cdr_location": {
            "id": f"L{place}",
            "address": "Main Street 1",
            "city": "Utrecht",
            "country": "NLD",
            "coordinates": {"latitude": "52.09074", "longitude": "5.12142"},
            "evse_uid": f"E{place}",
            "evse_id": f"NL*CPO*E{place}",
            "connector_id": "1",
            "connector_standard": "IEC_62196_T2",
            "connector_format": "SOCKET",
            "connector_power_type": "AC_3_PHASE",
        },
        "currency": "EUR",
        "charging_periods": [
            {
                "start_date_time": iso(start),
                "tariff_id": f"T{place}",
                "dimensions": [{"type": "ENERGY", "volume": energy[0]}, {"type": "TIME", "volume": hours[0]}],
            },
            {
                "start_date_time": iso(middle),
                "tariff_id": f"T{place}",
                "dimensions": [{"type": "ENERGY", "volume": energy[1]}, {"type": "TIME", "volume": hours[1]}],
            },
            {
                "start_date_time": iso(parked),
                "tariff_id": f"T{place}",
                "dimensions": [{"type": "PARKING_TIME", "volume": hours[2]}],
            },
        ],
        "total_cost": {"excl_vat": Decimal(0), "incl_vat": Decimal(0)},
        "total_energy": energy[0] + energy[1],
        "total_time": Decimal(minutes) / 60,
        "total_parking_time": hours[2],
        "last_updated": iso(end),
    }
    result = price_cdr(decode_cdr(ENCODER.encode(doc)), decode_tariff(ENCODER.encode(tariff_doc)), "Europe/Amsterdam")
    for name in ("total_cost", "total_fixed_cost", "total_energy_cost", "total_time_cost", "total_parking_cost"):
        doc[name] = msgspec.to_builtins(getattr(result, name), builtin_types=(Decimal,))
    doc["total_time"] = result.total_time
    doc["total_parking_time"] = result.total_parking_time
    if number % 10 == 3:  # a wrong price
        doc["total_cost"] = {"excl_vat": result.total_cost.excl_vat + 1, "incl_vat": result.total_cost.incl_vat + 1}
    return doc


def world(count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """("cdr"|"session", object) pairs; every 20th CDR is followed by its credit CDR."""
    tariffs = {(n, v): tariff(n, v) for n in range(LOCATIONS) for v in (1, 2)}
    number = 0
    made = 0
    while made < count:
        start = T0 + timedelta(minutes=37 * number)
        place, who = number % LOCATIONS, number % TOKENS
        version = 1 if start < datetime(2026, 1, 15, tzinfo=UTC) else 2
        doc = cdr(number, start, place, who, tariffs[(place, version)])
        end = datetime.fromisoformat(doc["end_date_time"].replace("Z", "+00:00"))
        if number % 20 != 7:  # 5 % without a stored session
            yield "session", session(number, start, end, place, who)
        yield "cdr", doc
        made += 1
        if number % 20 == 0 and made < count:
            credit = {**doc, "id": f"CDR{number}-C", "credit": True, "credit_reference_id": doc["id"],
                      "total_cost": {k: -v for k, v in doc["total_cost"].items()}}  # fmt: skip
            yield "cdr", credit
            made += 1
        number += 1


async def recreate(name: str) -> str:
    url = make_url(ADMIN_URL)
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop(name: str) -> None:
    url = make_url(ADMIN_URL)
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def populate(session: AsyncSession, count: int) -> list[bytes]:
    stamp = datetime(2025, 12, 1, tzinfo=UTC)
    await session.execute(
        insert(LocationRow),
        [{"country_code": "NL", "party_id": "CPO", "location_id": f"L{n}", "publish": True,
          "data": ENCODER.encode(location(n)), "last_updated": stamp, "created_at": stamp, "updated_at": stamp}
         for n in range(LOCATIONS)],
    )  # fmt: skip
    await session.execute(
        insert(TokenRow),
        [{"country_code": "DE", "party_id": "MSP", "uid": f"TOK{n}", "type": "RFID", "visual_number": None,
          "issuer": "MSP", "group_id": None, "data": ENCODER.encode(token(n)), "last_updated": stamp,
          "created_at": stamp, "updated_at": stamp} for n in range(TOKENS)],
    )  # fmt: skip
    for version in (1, 2):
        effective = stamp if version == 1 else datetime(2026, 1, 15, tzinfo=UTC)
        await session.execute(
            insert(TariffVersionRow),
            [{"country_code": "NL", "party_id": "CPO", "tariff_id": f"T{n}", "data": ENCODER.encode(tariff(n, version)),
              "last_updated": effective, "received_at": effective, "deleted": False} for n in range(LOCATIONS)],
        )  # fmt: skip
    await session.execute(
        insert(TariffRow),
        [{"country_code": "NL", "party_id": "CPO", "tariff_id": f"T{n}", "data": ENCODER.encode(tariff(n, 2)),
          "last_updated": stamp, "created_at": stamp, "updated_at": stamp} for n in range(LOCATIONS)],
    )  # fmt: skip
    sessions: list[dict[str, Any]] = []
    cdrs: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    for kind, doc in world(count):
        data = ENCODER.encode(doc)
        end = datetime.fromisoformat(doc["end_date_time"].replace("Z", "+00:00"))
        if kind == "session":
            sessions.append({"country_code": "NL", "party_id": "CPO", "session_id": doc["id"].upper(),
                             "emsp_country_code": "DE", "emsp_party_id": "MSP", "data": data, "last_updated": end,
                             "created_at": end, "updated_at": end})  # fmt: skip
        else:
            payloads.append(data)
            cdrs.append({"country_code": "NL", "party_id": "CPO", "cdr_id": doc["id"].upper(),
                         "emsp_country_code": "DE", "emsp_party_id": "MSP", "session_id": doc["session_id"].upper(),
                         "data": data, "last_updated": end, "created_at": end, "credit": bool(doc.get("credit")),
                         "credit_reference_id": doc.get("credit_reference_id", "").upper() or None})  # fmt: skip
    for rows, model in ((sessions, SessionRow), (cdrs, CdrRow)):
        for start in range(0, len(rows), 2000):
            await session.execute(insert(model), rows[start : start + 2000])
    return payloads


def cpu_only(payloads: list[bytes]) -> float:
    """Parse, rules and pricing of every CDR in memory, with store facts already in hand: the ceiling."""
    locations = {f"L{n}": StoredObject(n, location(n)) for n in range(LOCATIONS)}
    tariffs = [tariff(n, 2) for n in range(LOCATIONS)]
    started = time.perf_counter()
    for payload in payloads:
        parsed = parse_cdr(payload)
        place = int(parsed.doc["cdr_location"]["id"][1:])
        facts = StoreFacts(location=locations[f"L{place}"])
        evaluate(parsed, tariffs=resolve_tariffs(parsed, given=[tariffs[place]]), store=facts, now=NOW)
    return time.perf_counter() - started


def rss_mib() -> float:
    """The current resident set size (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cdrs", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
    options = parser.parse_args()
    name = f"clearing_bench_{os.getpid()}"
    url = await recreate(name)
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        sessions = create_sessionmaker(engine)
        async with sessions.begin() as session:
            payloads = await populate(session, options.cdrs)
        cpu = cpu_only(payloads)
        count = len(payloads)
        del payloads
        gc.collect()
        rss_before = rss_mib()
        samples: list[float] = []
        stamps: list[float] = []

        def sample(_batch: IntakeSummary) -> None:
            samples.append(rss_mib())
            stamps.append(time.perf_counter())

        service = ClearingService(FixedClock(NOW))
        started = time.perf_counter()
        summary: IntakeSummary = await run_sync(sessions, service, batch_size=options.batch_size, progress=sample)
        elapsed = time.perf_counter() - started
        async with sessions() as session:
            records = await session.scalar(select(func.count()).select_from(ClearingCdrRow))
        await engine.dispose()
        print(f"CDRs taken in:          {summary.accepted} of {count} ({records} records)")
        print(f"validation:             {summary.validation}")
        print(f"pricing:                {summary.pricing}")
        print(f"batch size:             {options.batch_size}")
        print(f"CPU only (no database): {count / cpu:8.0f} CDRs/s  ({cpu:.2f} s)")
        print(f"end to end, PostgreSQL: {count / elapsed:8.0f} CDRs/s  ({elapsed:.2f} s)")
        print(f"end to end / CPU only:  {cpu / elapsed:8.2f}")
        quarter = max(1, len(samples) // 4)
        steps = [b - a for a, b in zip([started, *stamps], stamps, strict=False)]
        first, last = sum(steps[:quarter]) / quarter, sum(steps[-quarter:]) / quarter
        print(
            f"per batch:              first quarter {options.batch_size / first:.0f} CDRs/s, "
            f"last quarter {options.batch_size / last:.0f} CDRs/s"
        )
        print(
            f"RSS MiB:                {rss_before:.0f} before the sync; during it {min(samples):.0f}-{max(samples):.0f}"
            f" (first quarter of batches up to {max(samples[:quarter]):.0f}, last quarter up to "
            f"{max(samples[-quarter:]):.0f})"
        )
        return 0 if summary.accepted == count else 1
    finally:
        if not options.keep:
            await drop(name)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
