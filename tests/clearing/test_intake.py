"""Intake: idempotent on (country_code, party_id, id), conflicts refused and kept, stored CDRs synced in batches,
files imported in every accepted shape. Runs on PostgreSQL and SQLite.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clearing.document import RefusedPayload, canonical_hash, load_json
from clearing.intake import (
    ClearingService,
    IntakeItem,
    IntakeSummary,
    import_file,
    iter_file,
    run_sync,
    sync_from_store,
)
from clearing.models import (
    ClearingCdrRow,
    ClearingEventRow,
    ClearingFindingRow,
    ClearingPriceCheckRow,
    ClearingRejectionRow,
)
from hub.models import Base
from hub.objects.service import ObjectStore
from hub.platform.clock import FixedClock
from tests.clearing.samples import D, cdr, dump, price

TABLES = (ClearingCdrRow, ClearingFindingRow, ClearingPriceCheckRow, ClearingEventRow, ClearingRejectionRow)


async def contents(db: AsyncSession) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every clearing table, for before/after comparisons."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for model in TABLES:
        table = Base.metadata.tables[model.__tablename__]
        rows = await db.execute(select(table).order_by(*table.primary_key.columns))
        found[table.name] = [tuple(row) for row in rows]
    return found


async def count(db: AsyncSession, model: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model)) or 0)


def item(doc: dict[str, Any] | bytes, source: str = "file") -> IntakeItem:
    return IntakeItem(doc if isinstance(doc, bytes) else dump(doc), source, "test.json")


async def test_the_same_cdr_again_changes_nothing(db: AsyncSession, service: ClearingService) -> None:
    [first] = await service.take_in(db, [item(cdr())])
    await db.commit()
    assert (first.status, first.validation_state, first.pricing_state) == ("accepted", "warning", "matched")
    before = await contents(db)
    # The same CDR differently written: key order, 4.00 as 4, an explicit null, other whitespace.
    written = dump(cdr(total_cost={"incl_vat": D(4), "excl_vat": D("4.0")}, remark=None)).replace(b",", b", ")
    assert canonical_hash(load_json(written)) == canonical_hash(load_json(dump(cdr())))
    assert canonical_hash(json.loads(written)) == canonical_hash(load_json(dump(cdr())))
    outcomes = await service.take_in(db, [item(written), item(cdr())])
    await db.commit()
    assert [o.status for o in outcomes] == ["duplicate", "duplicate"]
    assert all(o.record_id == first.record_id for o in outcomes)
    assert await contents(db) == before


async def test_a_conflicting_cdr_is_refused_and_kept_with_its_payload(
    db: AsyncSession, service: ClearingService
) -> None:
    await service.take_in(db, [item(cdr())])
    await db.commit()
    before = await contents(db)
    conflicting = dump(cdr(total_cost=price("5.00")))
    [outcome] = await service.take_in(db, [item(conflicting)])
    await db.commit()
    assert outcome.status == "conflict"
    assert "credit CDR" in (outcome.message or "")
    after = await contents(db)
    assert {name: rows for name, rows in after.items() if name != "clearing_intake_rejections"} == {
        name: rows for name, rows in before.items() if name != "clearing_intake_rejections"
    }
    rejection = (await db.execute(select(ClearingRejectionRow))).scalar_one()
    assert rejection.raw == conflicting
    assert (rejection.reason, rejection.country_code, rejection.party_id, rejection.cdr_id) == (
        "conflict",
        "NL",
        "CPO",
        "CDR1",
    )
    assert rejection.existing_record_id == outcome.record_id
    assert rejection.attempts == 1
    # The same refused payload again is counted, not stored twice.
    [again] = await service.take_in(db, [item(conflicting)])
    await db.commit()
    assert again.status == "conflict"
    await db.refresh(rejection)
    assert (await count(db, ClearingRejectionRow), rejection.attempts) == (1, 2)


async def test_keys_compare_case_insensitively(db: AsyncSession, service: ClearingService) -> None:
    await service.take_in(db, [item(cdr())])
    [outcome] = await service.take_in(db, [item(cdr("cdr1", country_code="nl", party_id="cpo"))])
    # Same key (CiStrings), different bytes in key fields: different content, so a conflict.
    assert outcome.status == "conflict"
    assert outcome.cdr == "NL/CPO/CDR1"


async def test_duplicates_and_conflicts_inside_one_batch(db: AsyncSession, service: ClearingService) -> None:
    outcomes = await service.take_in(db, [item(cdr()), item(cdr(total_cost=price("9"))), item(cdr()), item(cdr("B"))])
    assert [o.status for o in outcomes] == ["accepted", "conflict", "duplicate", "accepted"]
    assert await count(db, ClearingCdrRow) == 2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (dump({k: v for k, v in cdr().items() if k != "id"}), "`id` must be"),
        (dump(cdr(country_code="NLD")), "`country_code` must be"),
        (dump(cdr("X" * 40)), "`id` must be"),
        (dump(cdr(session_id="S\x001")), "U+0000"),  # PostgreSQL cannot store it in text
    ],
    ids=["not-json", "not-an-object", "no-id", "long-country", "long-id", "nul-character"],
)
async def test_invalid_payloads_are_refused_and_kept(
    db: AsyncSession, service: ClearingService, payload: bytes, reason: str
) -> None:
    [outcome] = await service.take_in(db, [item(payload)])
    assert outcome.status == "invalid"
    assert reason in (outcome.message or "")
    rejection = (await db.execute(select(ClearingRejectionRow))).scalar_one()
    assert (rejection.raw, rejection.reason, rejection.cdr_id) == (payload, "invalid", None)
    assert await count(db, ClearingCdrRow) == 0


async def test_a_schema_violation_is_taken_in_with_a_finding(db: AsyncSession, service: ClearingService) -> None:
    broken = cdr()
    del broken["cdr_location"]["city"]
    [outcome] = await service.take_in(db, [item(broken)])
    assert (outcome.status, outcome.validation_state) == ("accepted", "error")
    finding = (await db.execute(select(ClearingFindingRow).where(ClearingFindingRow.code == "CDR001"))).scalar_one()
    assert finding.pointer == "/cdr_location"
    assert "city" in finding.message


async def store_cdrs(store: ObjectStore, db: AsyncSession, count_: int, start: int = 1) -> None:
    for number in range(start, start + count_):
        await store.store_cdr(db, "NL", "CPO", dump(cdr(f"CDR{number}", session_id=f"S{number}")))
    await db.commit()


async def test_sync_takes_in_stored_cdrs_in_batches(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await store_cdrs(store, db, 5)
    seen = []
    for _ in range(4):
        summary = await service.sync_from_store(db, 2)
        await db.commit()
        seen.append(summary.accepted)
    assert seen == [2, 2, 1, 0]
    records = (await db.execute(select(ClearingCdrRow).order_by(ClearingCdrRow.id))).scalars().all()
    assert [r.cdr_id for r in records] == [f"CDR{n}" for n in range(1, 6)]
    assert {(r.source, r.delivery_state) for r in records} == {("store", "received")}
    assert [r.store_row_id for r in records] == [1, 2, 3, 4, 5]
    # The stored bytes are kept byte for byte.
    first = await store.get_cdr(db, "NL", "CPO", "CDR1")
    assert records[0].raw == first


async def test_module_sync_and_run_sync(
    db: AsyncSession, sessions: async_sessionmaker[AsyncSession], store: ObjectStore, clock: FixedClock
) -> None:
    await store_cdrs(store, db, 3)
    summary = await sync_from_store(db, 1, clock=clock)
    await db.commit()
    assert (summary.accepted, summary.last_store_row_id) == (1, 1)
    batches: list[IntakeSummary] = []
    total = await run_sync(sessions, ClearingService(clock), batch_size=1, progress=batches.append)
    assert (total.seen, total.accepted, len(batches)) == (2, 2, 2)
    assert (await run_sync(sessions, ClearingService(clock))).seen == 0
    await store_cdrs(store, db, 3, start=10)
    limited = await run_sync(sessions, ClearingService(clock), batch_size=2, limit=1)
    assert limited.seen == 1
    assert (await run_sync(sessions, ClearingService(clock))).seen == 2


async def test_sync_links_an_imported_cdr_and_refuses_a_conflicting_one(
    db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    await service.take_in(db, [item(cdr("CDR1")), item(cdr("CDR2", session_id="S2"))])
    await db.commit()
    await store.store_cdr(db, "NL", "CPO", dump(cdr("CDR1")))
    await store.store_cdr(db, "NL", "CPO", dump(cdr("CDR2", session_id="S2", total_cost=price("7"))))
    await db.commit()
    before = await count(db, ClearingEventRow)
    summary = await service.sync_from_store(db)
    await db.commit()
    assert (summary.duplicates, summary.conflicts, summary.accepted) == (1, 1, 0)
    linked = (await db.execute(select(ClearingCdrRow).where(ClearingCdrRow.cdr_id == "CDR1"))).scalar_one()
    assert (linked.store_row_id, linked.source) == (1, "file")
    rejection = (await db.execute(select(ClearingRejectionRow))).scalar_one()
    assert (rejection.store_row_id, rejection.source, rejection.reason) == (2, "store", "conflict")
    assert await count(db, ClearingEventRow) == before
    # Nothing left to pick up: neither the linked nor the refused row comes back.
    assert (await service.sync_from_store(db)).seen == 0


async def test_concurrent_syncs_take_each_cdr_in_once(
    sessions: async_sessionmaker[AsyncSession], db: AsyncSession, store: ObjectStore, service: ClearingService
) -> None:
    if db.get_bind().dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers; a stale reader cannot upgrade to a writer")
    await store_cdrs(store, db, 20)

    async def sync() -> IntakeSummary:
        async with sessions.begin() as session:
            return await service.sync_from_store(session, 50)

    first, second = await asyncio.gather(sync(), sync())
    assert first.accepted + second.accepted == 20
    assert first.duplicates + second.duplicates == first.seen + second.seen - 20
    assert await count(db, ClearingCdrRow) == 20
    assert await count(db, ClearingRejectionRow) == 0


def write(path: Path, content: Any) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else dump(content))
    return path


async def test_import_file_in_every_shape(
    tmp_path: Path, sessions: async_sessionmaker[AsyncSession], service: ClearingService, db: AsyncSession
) -> None:
    files = [
        write(tmp_path / "one.json", cdr("F1", session_id="F1")),
        write(tmp_path / "list.json", [cdr(f"L{n}", session_id=f"L{n}") for n in range(5)]),
        write(
            tmp_path / "envelope.json",
            {"data": [cdr("E1", session_id="E1")], "status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"},
        ),
        write(tmp_path / "lines.jsonl", b"\n".join(dump(cdr(f"J{n}", session_id=f"J{n}")) for n in range(3)) + b"\n"),
    ]
    progress: list[tuple[int, int]] = []
    summaries = [
        await import_file(sessions, service, path, batch_size=2, progress=lambda d, t: progress.append((d, t)))
        for path in files
    ]
    assert [s.accepted for s in summaries] == [1, 5, 1, 3]
    assert progress[1:4] == [(2, 5), (4, 5), (5, 5)]
    assert summaries[1].file_sha256 is not None
    assert await count(db, ClearingCdrRow) == 10
    again = [await import_file(sessions, service, path) for path in files]
    assert [(s.accepted, s.duplicates) for s in again] == [(0, 1), (0, 5), (0, 1), (0, 3)]
    record = (await db.execute(select(ClearingCdrRow).where(ClearingCdrRow.cdr_id == "L3"))).scalar_one()
    assert (record.source, record.source_ref, record.delivery_state) == ("file", "list.json", "imported")


def test_iter_file_streams_and_refuses_junk(tmp_path: Path) -> None:
    count_, payloads = iter_file(write(tmp_path / "list.json", [cdr("A"), cdr("B")]))
    assert count_ == 2
    assert next(payloads) == dump(cdr("A"))
    with pytest.raises(RefusedPayload):
        iter_file(write(tmp_path / "junk.json", b"{oops"))
    with pytest.raises(RefusedPayload):
        iter_file(write(tmp_path / "empty.json", b""))


def test_every_clearing_table_is_in_the_schema() -> None:
    assert {model.__tablename__ for model in TABLES} <= set(Base.metadata.tables)
