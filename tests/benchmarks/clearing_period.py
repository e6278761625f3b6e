"""Clearing a whole period on PostgreSQL: CDRs per second from intake to netting, next to ``COPY`` of the same rows.

Not a test (pytest does not collect ``tests/benchmarks``). Run it with the services up (``make services``):

    .venv/bin/python -m tests.benchmarks.clearing_period [--cdrs 1000000] [--batch-size 2000] [--json out.json]

``HUB_BENCH_CLEARING_CDRS`` sets the default number of CDRs (1,000,000). A scratch database is created next to
``HUB_TEST_DATABASE_URL``, migrated, filled the way routing would have filled it, and dropped at the end:

* three CPOs with 50 locations each (Europe/Amsterdam), each location's tariff in two versions (the second takes
  effect mid-period) with a time-of-day energy price, a flat fee and parking; two eMSPs with 1,000 tokens each;
  six CPO/eMSP pairs, each with terms (a per-kWh hub fee, a 14-day approval window);
* February 2026, CDRs in the order of their start (every 5 minutes a few dozen): a session per CDR (5 % missing),
  2 % credit CDRs, 10 % wrong prices. A CDR's price depends on its local start time, its variant and the tariff
  version only, so the engine prices each such template once and generation stays fast.

Phases, each timed: generation (COPY into ``cdrs`` and ``sessions``), intake (``run_sync``: reading, matching,
validation, pricing, records, findings, price checks, events), and the period close (``close_period``: statement
lines for every CDR, totals, fees, input hashes, netting). The baseline is ``COPY (SELECT … FROM cdrs) TO STDOUT``
of the same rows in the same run. Peak RSS is the process's (``ru_maxrss``); the process holds one batch at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from clearing.intake import ClearingService, IntakeSummary, run_sync
from clearing.models import ClearingCdrRow
from clearing.pricing import decode_cdr, decode_tariff, price_cdr
from clearing.settlement.models import StatementLineRow
from clearing.settlement.service import SettlementService
from clearing.settlement.terms import FeeRule, Terms
from hub.migrate import upgrade
from hub.platform.clock import FixedClock
from hub.platform.db import create_engine, create_sessionmaker
from tests.benchmarks.harness import ADMIN_URL, admin_sql, connect

DEFAULT_CDRS = int(os.environ.get("HUB_BENCH_CLEARING_CDRS", "1000000"))
ENCODER = msgspec.json.Encoder(decimal_format="number")
PERIOD = "2026-02"
PERIOD_START = datetime(2026, 2, 1, tzinfo=UTC)
VERSION_2_FROM = datetime(2026, 2, 15, tzinfo=UTC)
DAYS = 27  # CDRs start on Feb 1-27 and end before Mar 1
CPOS = (("NL", "CP1"), ("NL", "CP2"), ("BE", "CP3"))
EMSPS = (("DE", "MS1"), ("FR", "MS2"))
LOCATIONS = 50
TOKENS = 1000
STAMP = datetime(2025, 12, 1, tzinfo=UTC)
# Intake runs on March 2 and the close on March 20: the 14-day approval window has passed, so pending CDRs settle.
INTAKE_AT = datetime(2026, 3, 2, tzinfo=UTC)
CLOSE_AT = datetime(2026, 3, 20, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def tariff(cpo: tuple[str, str], number: int, version: int) -> dict[str, Any]:
    day, night = (Decimal("0.35"), Decimal("0.25")) if version == 1 else (Decimal("0.39"), Decimal("0.29"))
    return {
        "country_code": cpo[0],
        "party_id": cpo[1],
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
        "last_updated": iso(STAMP if version == 1 else VERSION_2_FROM),
    }


def location(cpo: tuple[str, str], number: int) -> dict[str, Any]:
    return {
        "country_code": cpo[0],
        "party_id": cpo[1],
        "id": f"L{number}",
        "publish": True,
        "address": "Main Street 1",
        "city": "Utrecht",
        "country": "NLD",
        "coordinates": {"latitude": "52.09074", "longitude": "5.12142"},
        "evses": [
            {
                "uid": f"E{number}",
                "evse_id": f"{cpo[0]}*{cpo[1]}*E{number}",
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
                        "last_updated": iso(STAMP),
                    }
                ],
                "last_updated": iso(STAMP),
            }
        ],
        "time_zone": "Europe/Amsterdam",
        "last_updated": iso(STAMP),
    }


def cdr_token(emsp: tuple[str, str], number: int) -> dict[str, Any]:
    return {"country_code": emsp[0], "party_id": emsp[1], "uid": f"TOK{number}", "type": "RFID",
            "contract_id": f"{emsp[0]}-{emsp[1]}-C{number}"}  # fmt: skip


def token(emsp: tuple[str, str], number: int) -> dict[str, Any]:
    return {**cdr_token(emsp, number), "issuer": emsp[1], "valid": True, "whitelist": "ALLOWED",
            "last_updated": iso(STAMP)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Template:
    """One CDR shape priced once, as JSON text with ``%(name)s`` holes for what differs from CDR to CDR.

    ``normal``, ``wrong`` (total cost one euro too high), ``credit`` (the credit CDR of a ``normal`` one) and
    ``session``; ``offsets`` are the minutes from the start of the second and third period and of the end.
    """

    offsets: tuple[int, int, int]
    normal: str
    wrong: str
    credit: str
    session: str


# What differs per CDR, as placeholders in the template documents.
_PARTY = {"country_code": "%(cc)s", "party_id": "%(pid)s"}
_TOKEN = {"country_code": "%(tcc)s", "party_id": "%(tpid)s", "uid": "%(uid)s", "type": "RFID",
          "contract_id": "%(contract)s"}  # fmt: skip


def _template(start: datetime, variant: int, version: int) -> Template:
    minutes = 30 + 15 * variant
    charging = minutes - minutes // 5
    hours = [Decimal(charging // 2) / 60, Decimal(charging - charging // 2) / 60, Decimal(minutes // 5) / 60]
    kilowatts = Decimal(7 + variant % 4)
    energy = [(kilowatts * hours[0]).quantize(Decimal("0.001")), (kilowatts * hours[1]).quantize(Decimal("0.001"))]
    volumes = [
        [{"type": "ENERGY", "volume": energy[0]}, {"type": "TIME", "volume": hours[0]}],
        [{"type": "ENERGY", "volume": energy[1]}, {"type": "TIME", "volume": hours[1]}],
        [{"type": "PARKING_TIME", "volume": hours[2]}],
    ]
    offsets = (charging // 2, charging, minutes)
    doc: dict[str, Any] = {
        **_PARTY, "id": "%(id)s", "start_date_time": iso(start),
        "end_date_time": iso(start + timedelta(minutes=minutes)), "session_id": "%(sid)s",
        "cdr_token": _TOKEN, "auth_method": "WHITELIST",
        "cdr_location": {"id": "%(loc)s", "address": "Main Street 1", "city": "Utrecht", "country": "NLD",
                         "coordinates": {"latitude": "52.09074", "longitude": "5.12142"},
                         "evse_uid": "%(evse)s", "evse_id": "%(evse_id)s", "connector_id": "1",
                         "connector_standard": "IEC_62196_T2", "connector_format": "SOCKET",
                         "connector_power_type": "AC_3_PHASE"},
        "currency": "EUR",
        "charging_periods": [
            {"start_date_time": iso(start + timedelta(minutes=offset)), "tariff_id": "%(tariff)s",
             "dimensions": dims}
            for offset, dims in zip((0, *offsets[:2]), volumes, strict=True)
        ],
        "total_cost": {"excl_vat": 0}, "total_energy": energy[0] + energy[1], "total_time": Decimal(minutes) / 60,
        "last_updated": iso(start + timedelta(minutes=minutes)),
    }  # fmt: skip
    tariff_doc = {**tariff(CPOS[0], 0, version), "id": "%(tariff)s"}
    result = price_cdr(decode_cdr(ENCODER.encode(doc)), decode_tariff(ENCODER.encode(tariff_doc)), "Europe/Amsterdam")
    for name in ("total_cost", "total_fixed_cost", "total_energy_cost", "total_time_cost", "total_parking_cost"):
        doc[name] = msgspec.to_builtins(getattr(result, name), builtin_types=(Decimal,))
    doc["total_time"] = result.total_time
    doc["total_parking_time"] = result.total_parking_time
    cost = doc["total_cost"]
    wrong = {**doc, "total_cost": {"excl_vat": cost["excl_vat"] + 1, "incl_vat": cost["incl_vat"] + 1}}
    credit = {**doc, "credit": True, "credit_reference_id": "%(ref)s",
              "total_cost": {name: -amount for name, amount in cost.items()}}  # fmt: skip
    session = {
        **_PARTY, "id": "%(sid)s", "start_date_time": doc["start_date_time"], "end_date_time": doc["end_date_time"],
        "kwh": doc["total_energy"], "cdr_token": _TOKEN, "auth_method": "WHITELIST", "location_id": "%(loc)s",
        "evse_uid": "%(evse)s", "connector_id": "1", "currency": "EUR", "status": "COMPLETED",
        "last_updated": doc["end_date_time"],
    }  # fmt: skip
    texts = [ENCODER.encode(item).decode() for item in (doc, wrong, credit, session)]
    day = iso(start)[:10]  # every timestamp's date becomes a hole, so the template serves every day
    following = iso(start + timedelta(days=1))[:10]
    texts = [text.replace(f'"{day}T', '"%(day)sT').replace(f'"{following}T', '"%(next)sT') for text in texts]
    return Template(offsets, *texts)


class World:
    """The generated period as rows of ``cdrs`` and ``sessions``, in the order a hub receives them (by start).

    CDRs start on 5-minute marks spread evenly over the period. A CDR's price depends only on its local start time
    of day, its variant (length and power) and the tariff version, so each such template is priced once by the
    engine and reused for every day (February has no DST change); the rest is text substitution.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.templates: dict[tuple[int, int, int], Template] = {}

    def template(self, start: datetime, variant: int) -> Template:
        version = 2 if start >= VERSION_2_FROM else 1
        key = (start.hour * 60 + start.minute, variant, version)
        found = self.templates.get(key)
        if found is None:
            base = (PERIOD_START if version == 1 else VERSION_2_FROM).replace(hour=start.hour, minute=start.minute)
            found = self.templates[key] = _template(base, variant, version)
        return found

    def rows(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """("session"|"cdr", row); every 50th CDR is followed by its credit CDR (2 %), 10 % have a wrong price
        and 5 % no stored session."""
        slots = DAYS * 288
        made = number = 0
        while made < self.count:
            start = PERIOD_START + timedelta(minutes=5 * (made * slots // self.count))
            template = self.template(start, number % 8)
            end = start + timedelta(minutes=template.offsets[2])
            cpo, emsp = CPOS[number % 3], EMSPS[(number // 3) % 2]
            place, who = (number // 6) % LOCATIONS, number % TOKENS
            values = {
                "cc": cpo[0], "pid": cpo[1], "id": f"CDR{number}", "sid": f"S{number}", "tcc": emsp[0],
                "tpid": emsp[1], "uid": f"TOK{who}", "contract": f"{emsp[0]}-{emsp[1]}-C{who}", "loc": f"L{place}",
                "evse": f"E{place}", "evse_id": f"{cpo[0]}*{cpo[1]}*E{place}", "tariff": f"T{place}",
                "day": iso(start)[:10], "next": iso(start + timedelta(days=1))[:10], "ref": f"CDR{number}",
            }  # fmt: skip
            party = (cpo[0], cpo[1])
            if number % 20 != 7:  # 5 % without a stored session
                data = (template.session % values).encode()
                yield "session", (*party, f"S{number}", *emsp, data, end, end, end)
            text = template.wrong if number % 10 == 3 else template.normal
            data = (text % values).encode()
            yield "cdr", (*party, f"CDR{number}", *emsp, f"S{number}", data, end, end, False, None)
            made += 1
            if number % 50 == 0 and made < self.count:
                values["id"] = f"CDR{number}-C"
                data = (template.credit % values).encode()
                yield "cdr", (*party, f"CDR{number}-C", *emsp, f"S{number}", data, end, end, True, f"CDR{number}")
                made += 1
            number += 1


async def populate(connection: asyncpg.Connection, count: int) -> int:
    """The static world (locations, tokens, tariffs) and ``count`` CDRs with their sessions, by ``COPY``."""
    for table, columns, rows in (
        ("locations", ("country_code", "party_id", "location_id", "publish", "data", "last_updated", "created_at",
                       "updated_at"),
         [(c[0], c[1], f"L{n}", True, ENCODER.encode(location(c, n)), STAMP, STAMP, STAMP)
          for c in CPOS for n in range(LOCATIONS)]),
        ("tokens", ("country_code", "party_id", "uid", "type", "issuer", "data", "last_updated", "created_at",
                    "updated_at"),
         [(e[0], e[1], f"TOK{n}", "RFID", e[1], ENCODER.encode(token(e, n)), STAMP, STAMP, STAMP)
          for e in EMSPS for n in range(TOKENS)]),
        ("tariff_versions", ("country_code", "party_id", "tariff_id", "data", "last_updated", "received_at",
                             "deleted"),
         [(c[0], c[1], f"T{n}", ENCODER.encode(tariff(c, n, v)), at, at, False)
          for c in CPOS for n in range(LOCATIONS) for v, at in ((1, STAMP), (2, VERSION_2_FROM))]),
        ("tariffs", ("country_code", "party_id", "tariff_id", "data", "last_updated", "created_at", "updated_at"),
         [(c[0], c[1], f"T{n}", ENCODER.encode(tariff(c, n, 2)), VERSION_2_FROM, STAMP, STAMP)
          for c in CPOS for n in range(LOCATIONS)]),
    ):  # fmt: skip
        await connection.copy_records_to_table(table, records=rows, columns=columns)
    sessions: list[tuple[Any, ...]] = []
    cdrs: list[tuple[Any, ...]] = []
    made = 0

    async def flush() -> None:
        await connection.copy_records_to_table(
            "sessions", records=sessions, columns=("country_code", "party_id", "session_id", "emsp_country_code",
                                                   "emsp_party_id", "data", "last_updated", "created_at",
                                                   "updated_at"),
        )  # fmt: skip
        await connection.copy_records_to_table(
            "cdrs", records=cdrs, columns=("country_code", "party_id", "cdr_id", "emsp_country_code",
                                           "emsp_party_id", "session_id", "data", "last_updated", "created_at",
                                           "credit", "credit_reference_id"),
        )  # fmt: skip
        sessions.clear()
        cdrs.clear()

    for kind, row in World(count).rows():
        if kind == "session":
            sessions.append(row)
        else:
            made += 1
            cdrs.append(row)
            if len(cdrs) >= 10_000:
                await flush()
    await flush()
    await connection.execute("ANALYZE")
    return made


async def copy_rate(connection: asyncpg.Connection) -> tuple[int, int, float]:
    """(rows, bytes, seconds) of PostgreSQL writing the CDR rows out with ``COPY … TO STDOUT``."""
    received = [0]

    async def sink(chunk: bytes) -> None:
        received[0] += len(chunk)

    started = time.perf_counter()
    status = await connection.copy_from_query(
        "SELECT id, country_code, party_id, cdr_id, emsp_country_code, emsp_party_id, session_id, data, "
        "last_updated, credit, credit_reference_id FROM cdrs ORDER BY id",
        output=sink,
    )
    elapsed = time.perf_counter() - started
    return int(status.split()[-1]), received[0], elapsed


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(count: int, batch_size: int, keep: bool = False) -> dict[str, Any]:
    """Generate, take in and close a period of ``count`` CDRs; the numbers as a dict (``results.json``)."""
    name = f"clearing_period_{os.getpid()}"
    task = asyncio.current_task()
    if task is not None:  # stopped (SIGTERM), the run is cancelled and its scratch database still dropped
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin_sql(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(upgrade, url)
        connection = await connect(url)
        try:
            started = time.perf_counter()
            made = await populate(connection, count)
            generated = time.perf_counter() - started
            rss_generated = peak_rss_mib()
            copy_rows, copy_bytes, copy_s = await copy_rate(connection)
        finally:
            await connection.close()
        engine = create_engine(url)
        sessions = create_sessionmaker(engine)
        async with sessions.begin() as session:
            settlement = SettlementService(FixedClock(INTAKE_AT), batch_size=batch_size)
            for cpo in CPOS:
                for emsp in EMSPS:
                    await settlement.set_terms(
                        session,
                        Terms(cpo=f"{cpo[0]}/{cpo[1]}", emsp=f"{emsp[0]}/{emsp[1]}", valid_from=STAMP,
                              currency="EUR", approval_window_days=14,
                              fees={"per_kwh": FeeRule(rate=Decimal("0.01"), payer="cpo")}),
                        actor="bench",
                    )  # fmt: skip
        started, cpu = time.perf_counter(), time.process_time()
        batches = [0]

        def progress(_batch: IntakeSummary) -> None:
            batches[0] += 1
            if batches[0] % 50 == 0:
                done = _batch.last_store_row_id or 0
                print(f"  intake: {done} CDRs, {done / (time.perf_counter() - started):.0f}/s", file=sys.stderr)

        summary = await run_sync(
            sessions, ClearingService(FixedClock(INTAKE_AT)), batch_size=batch_size, progress=progress
        )
        intake_s, intake_cpu = time.perf_counter() - started, time.process_time() - cpu
        rss_intake = peak_rss_mib()
        started, cpu = time.perf_counter(), time.process_time()
        closed = await SettlementService(FixedClock(CLOSE_AT), batch_size=batch_size).close_period(sessions, PERIOD)
        close_s, close_cpu = time.perf_counter() - started, time.process_time() - cpu
        async with sessions() as session:
            records = await session.scalar(select(func.count()).select_from(ClearingCdrRow)) or 0
            lines = (
                await session.scalar(
                    select(func.count()).select_from(StatementLineRow).where(StatementLineRow.kind == "cdr")
                )
                or 0
            )
        await engine.dispose()
        total_s = intake_s + close_s
        copy_per_s = copy_rows / copy_s
        return {
            "cdrs": made,
            "batch_size": batch_size,
            "records": records,
            "statement_cdr_lines": lines,
            "statements": len(closed.statements),
            "validation": summary.validation,
            "pricing": summary.pricing,
            "generation_s": round(generated, 1),
            "intake_s": round(intake_s, 1),
            "close_s": round(close_s, 1),
            "clearing_s": round(total_s, 1),
            # CPU seconds of this process per CDR: steadier than rates on a machine shared with other work.
            "intake_cpu_ms_per_cdr": round(1000 * intake_cpu / made, 3),
            "close_cpu_ms_per_cdr": round(1000 * close_cpu / made, 3),
            "intake_cdrs_per_s": round(made / intake_s),
            "close_cdrs_per_s": round(made / close_s),
            "clearing_cdrs_per_s": round(made / total_s),
            "copy_rows_per_s": round(copy_per_s),
            "copy_mb_per_s": round(copy_bytes / copy_s / 1e6, 1),
            "clearing_vs_copy": round(made / total_s / copy_per_s, 5),
            "peak_rss_mib": {
                "after_generation": round(rss_generated),
                "after_intake": round(rss_intake),
                "after_close": round(peak_rss_mib()),
            },
        }
    finally:
        if not keep:
            await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def describe(result: dict[str, Any]) -> str:
    rss = result["peak_rss_mib"]
    return (
        f"Clearing {result['cdrs']} CDRs (batch {result['batch_size']}): intake {result['intake_cdrs_per_s']} CDRs/s "
        f"({result['intake_s']} s), close {result['close_cdrs_per_s']} CDRs/s ({result['close_s']} s), total "
        f"{result['clearing_cdrs_per_s']} CDRs/s ({result['clearing_s']} s; generation {result['generation_s']} s) vs "
        f"COPY {result['copy_rows_per_s']} rows/s: {result['clearing_vs_copy']}; peak RSS {rss['after_close']} MiB "
        f"(after generation {rss['after_generation']}, after intake {rss['after_intake']})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cdrs", type=int, default=DEFAULT_CDRS)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="Also write the numbers to this file.")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
    options = parser.parse_args()
    result = asyncio.run(run(options.cdrs, options.batch_size, options.keep))
    print(json.dumps(result, indent=2))
    print(describe(result))
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["records"] == result["cdrs"] else 1


if __name__ == "__main__":
    sys.exit(main())
