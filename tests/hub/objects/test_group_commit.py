"""Group commit (hub.platform.groupcommit): concurrent writes share transactions, yet each request gets exactly the
outcome it would have had alone. Runs on PostgreSQL and SQLite, like the rest of the store's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import pytest
from asyncpg.exceptions import StringDataRightTruncationError
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hub.objects.bulk import StoredCdr, cdr_insert, session_put
from hub.objects.errors import CdrConflictError
from hub.objects.models import CdrRow, SessionRow
from hub.objects.service import Change, ObjectStore
from hub.platform.db import create_engine, create_sessionmaker
from hub.platform.groupcommit import GroupCommit
from hub.platform.web import OcpiError
from tests.hub.objects.builders import cdr, charging_session


@pytest.fixture
async def writes(db: AsyncSession, any_engine: AsyncEngine) -> GroupCommit:
    # `db` empties the database first; the committer opens its own transactions on the same engine.
    return GroupCommit(create_sessionmaker(any_engine))


async def _count(engine: AsyncEngine, model: type[SessionRow] | type[CdrRow]) -> int:
    async with create_sessionmaker(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_concurrent_writes_share_transactions(
    writes: GroupCommit, store: ObjectStore, any_engine: AsyncEngine
) -> None:
    async def put(i: int) -> Change:
        return await writes.run(lambda s: store.put_session(s, "NL", "CPO", f"S{i}", charging_session(f"S{i}")))

    changes = await asyncio.gather(*(put(i) for i in range(40)))
    assert all(change.created for change in changes)
    assert await _count(any_engine, SessionRow) == 40
    assert writes.items == 40
    # Whatever queued while a batch committed went into the next one: far fewer commits than requests.
    assert writes.batches < 40
    assert writes.fallbacks == 0


async def test_a_failing_write_gets_its_own_error_and_the_others_commit(
    writes: GroupCommit, store: ObjectStore, any_engine: AsyncEngine
) -> None:
    await writes.run(lambda s: store.store_cdr(s, "NL", "CPO", cdr("CDR0")))

    async def put(i: int) -> object:
        return await writes.run(lambda s: store.put_session(s, "NL", "CPO", f"S{i}", charging_session(f"S{i}")))

    results = await asyncio.gather(
        *(put(i) for i in range(10)),
        # Another CDR under an id that exists: refused (mod_cdrs §10.1.1), in the middle of the batch.
        writes.run(lambda s: store.store_cdr(s, "NL", "CPO", cdr("CDR0", total="9.99"))),
        # A session whose body names another owner than its URL: refused before any SQL.
        writes.run(lambda s: store.put_session(s, "NL", "CPO", "S99", charging_session("S99", party_id="XYZ"))),
        *(put(i) for i in range(10, 20)),
        return_exceptions=True,
    )
    assert isinstance(results[10], CdrConflictError)
    assert isinstance(results[11], OcpiError)
    assert not any(isinstance(r, BaseException) for i, r in enumerate(results) if i not in (10, 11))
    assert await _count(any_engine, SessionRow) == 20
    assert await _count(any_engine, CdrRow) == 1
    assert writes.fallbacks >= 1


async def test_a_lone_write_is_committed_at_once(
    writes: GroupCommit, store: ObjectStore, any_engine: AsyncEngine
) -> None:
    stored = await writes.run(lambda s: store.store_cdr(s, "NL", "CPO", cdr("CDR1")))
    assert stored.created
    # Committed before run() returned: another connection sees it.
    assert await _count(any_engine, CdrRow) == 1
    replay = await writes.run(lambda s: store.store_cdr(s, "NL", "CPO", cdr("CDR1")))
    assert not replay.created
    assert (writes.batches, writes.items) == (2, 2)


# ---- bulk writes: one statement per kind and transaction (hub.objects.bulk) ---------------------------------------


async def _stored_session(engine: AsyncEngine, session_id: str) -> tuple[bytes, str]:
    async with create_sessionmaker(engine)() as session:
        row = (
            await session.execute(
                select(SessionRow.data, SessionRow.emsp_party_id).where(SessionRow.session_id == session_id)
            )
        ).one()
        return row.data, row.emsp_party_id


async def test_bulk_session_puts_share_one_batch_and_keep_arrival_order_per_session(
    writes: GroupCommit, store: ObjectStore, any_engine: AsyncEngine
) -> None:
    await writes.run_bulk(store.put_sessions, session_put("NL", "CPO", "S0", charging_session("S0", kwh=Decimal("1"))))
    first = charging_session("S1", kwh=Decimal("1"))
    second = charging_session("S1", kwh=Decimal("2"), emsp=("DE", "XYZ"))
    # S1 twice in one batch: one statement cannot touch a row twice, so the second goes in a later round.
    created = await asyncio.gather(
        writes.run_bulk(store.put_sessions, session_put("NL", "CPO", "S1", first)),
        writes.run_bulk(store.put_sessions, session_put("nl", "cpo", "s1", second)),
        writes.run_bulk(store.put_sessions, session_put("NL", "CPO", "S0", charging_session("S0", kwh=Decimal("3")))),
        *(
            writes.run_bulk(store.put_sessions, session_put("NL", "CPO", f"S{i}", charging_session(f"S{i}")))
            for i in range(2, 12)
        ),
    )
    assert created == [True, False, False] + [True] * 10
    assert (writes.batches, writes.items, writes.fallbacks) == (2, 14, 0)
    # The later PUT of S1 replaced the earlier one, eMSP included (mod_sessions §9.2.2.2: PUT replaces).
    assert await _stored_session(any_engine, "S1") == (second, "XYZ")
    assert await _count(any_engine, SessionRow) == 12


async def test_bulk_cdrs_replays_and_conflicts_are_their_own_outcomes(
    writes: GroupCommit, store: ObjectStore, any_engine: AsyncEngine
) -> None:
    await writes.run_bulk(store.store_cdrs, cdr_insert("NL", "CPO", cdr("CDR0")))
    results = await asyncio.gather(
        writes.run_bulk(store.store_cdrs, cdr_insert("NL", "CPO", cdr("CDR1"))),
        # The same CDR again in the same batch: a replay of the first (mod_cdrs §10.1).
        writes.run_bulk(store.store_cdrs, cdr_insert("nl", "cpo", cdr("CDR1"))),
        # Another CDR under the id of one stored earlier, and under the id of one in this batch: both refused.
        writes.run_bulk(store.store_cdrs, cdr_insert("NL", "CPO", cdr("CDR0", total="9.99"))),
        writes.run_bulk(store.store_cdrs, cdr_insert("NL", "CPO", cdr("CDR1", total="9.99"))),
        # A replay of the stored one, formatted differently.
        writes.run_bulk(store.store_cdrs, cdr_insert("NL", "CPO", cdr("CDR0") + b"  ")),
        writes.run(lambda s: store.put_session(s, "NL", "CPO", "S1", charging_session("S1"))),
        writes.run_bulk(store.store_cdrs, cdr_insert("NL", "CPO", cdr("CDR2"))),
        return_exceptions=True,
    )
    stored = [r for r in results if isinstance(r, StoredCdr)]
    assert [(r.id, r.created, r.emsp) for r in stored] == [
        ("CDR1", True, ("DE", "MSP")),
        ("CDR1", False, ("DE", "MSP")),
        ("CDR0", False, ("DE", "MSP")),
        ("CDR2", True, ("DE", "MSP")),
    ]
    assert isinstance(results[2], CdrConflictError)
    assert isinstance(results[3], CdrConflictError)
    assert "already exists with different content" in results[3].message
    assert isinstance(results[5], Change)
    assert results[5].created
    # Refusals found by comparing wrote nothing, so the batch still committed as one: no fallback.
    assert (writes.batches, writes.items, writes.fallbacks) == (2, 8, 0)
    assert await _count(any_engine, CdrRow) == 3


async def test_a_bulk_write_the_database_refuses_falls_back_to_its_own_transaction(
    writes: GroupCommit, store: ObjectStore, any_engine: AsyncEngine
) -> None:
    good = [session_put("NL", "CPO", f"S{i}", charging_session(f"S{i}")) for i in range(5)]
    # Checked like any PUT, but with a key longer than its column: the shared statement fails on PostgreSQL, the batch
    # is written again one PUT per transaction, and only this PUT fails. (SQLite does not enforce lengths.)
    long_key = replace(good[0], key=("NL", "CPO", "S" * 80))
    results = await asyncio.gather(
        *(writes.run_bulk(store.put_sessions, put) for put in [*good[:2], long_key, *good[2:]]),
        return_exceptions=True,
    )
    if any_engine.dialect.name == "postgresql":
        assert isinstance(results[2], StringDataRightTruncationError)
        assert writes.fallbacks == 1
        assert await _count(any_engine, SessionRow) == 5
    else:
        assert results[2] is True
        assert await _count(any_engine, SessionRow) == 6
    assert [results[i] for i in (0, 1, 3, 4, 5)] == [True] * 5


async def test_a_bulk_function_must_answer_every_payload(writes: GroupCommit) -> None:
    async def short(_session: AsyncSession, payloads: list[int]) -> Sequence[int | Exception]:
        return payloads[1:]

    # Alone, each payload gets an empty answer: a programming error, raised to the caller rather than a lost write.
    with pytest.raises(RuntimeError, match="answered 0 outcomes for 1 payloads"):
        await writes.run_bulk(short, 1)


async def test_a_connection_that_dies_under_a_run_of_batches_loses_no_write(clean_database: AsyncEngine) -> None:
    # Batches reuse one connection while more are queued (no ping per batch). Here the database drops that connection
    # (as a restart would) under the first batch: its write is done again on a checked connection, the next batch
    # takes a fresh one, and both requests get their own successful outcome.
    writes = GroupCommit(create_sessionmaker(clean_database), max_batch=1, max_concurrent=1)
    pids: list[int] = []

    async def backend(session: AsyncSession) -> int:
        return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)

    async def doomed(session: AsyncSession) -> str:
        pids.append(await backend(session))
        if len(pids) == 1:
            async with clean_database.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
        await session.execute(text("SELECT 1"))
        return "first"

    async def second(session: AsyncSession) -> int:
        return await backend(session)

    first, next_pid = await asyncio.gather(writes.run(doomed), writes.run(second))
    assert first == "first"
    assert len(pids) == 2  # the killed attempt, then the one on a checked connection
    assert next_pid not in (pids[0], 0)
    assert (writes.batches, writes.items) == (2, 2)


async def test_writes_in_quick_succession_keep_one_connection(clean_database: AsyncEngine) -> None:
    # Each checkout from the pool costs a ping round trip; a committer keeps its connection while writes keep coming.
    writes = GroupCommit(create_sessionmaker(clean_database), linger=0.5)
    checkouts: list[object] = []

    def checked_out(*_args: object) -> None:
        checkouts.append(object())

    event.listen(clean_database.sync_engine, "checkout", checked_out)
    try:

        async def one(session: AsyncSession) -> int:
            return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)

        pids = []
        for _ in range(5):
            pids.append(await writes.run(one))
            await asyncio.sleep(0.01)
        assert len(set(pids)) == 1
        assert len(checkouts) == 1
        await asyncio.sleep(0.7)  # past the linger time: the connection went back, the next write checks one out
        await writes.run(one)
        assert len(checkouts) == 2
    finally:
        event.remove(clean_database.sync_engine, "checkout", checked_out)


async def test_with_the_database_down_each_write_gets_its_error_at_once(store: ObjectStore) -> None:
    # Nothing listens on port 1: no connection for the batch, none for the items. Every request must get an error
    # (the hub answers it), not wait for a connection that nobody retries.
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    writes = GroupCommit(create_sessionmaker(engine))
    puts = [session_put("NL", "CPO", f"S{i}", charging_session(f"S{i}")) for i in range(3)]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(writes.run_bulk(store.put_sessions, put) for put in puts), return_exceptions=True),
            timeout=30,
        )
    finally:
        await engine.dispose()
    assert [type(result).__name__ for result in results] == ["ConnectionRefusedError"] * 3


async def test_bulk_only_batches_run_on_the_driver_without_a_session(
    clean_database: AsyncEngine, store: ObjectStore
) -> None:
    # On PostgreSQL the bulk statements commit on their own; the session around them only cost greenlet switches,
    # begin and commit (0.3-0.4 ms per batch at light load). A batch with other work still gets its transaction.
    writes = GroupCommit(create_sessionmaker(clean_database))
    begins: list[object] = []

    def began(*_args: object) -> None:
        begins.append(object())

    event.listen(clean_database.sync_engine, "begin", began)
    try:
        created = await asyncio.gather(
            *(
                writes.run_bulk(store.put_sessions, session_put("NL", "CPO", f"S{i}", charging_session(f"S{i}")))
                for i in range(5)
            )
        )
        assert created == [True] * 5
        assert begins == []
        await writes.run(lambda s: store.put_session(s, "NL", "CPO", "S9", charging_session("S9")))
        assert len(begins) == 1
    finally:
        event.remove(clean_database.sync_engine, "begin", began)
    assert await _count(clean_database, SessionRow) == 6


async def test_a_bulk_write_on_a_connection_the_database_dropped_is_written_again(
    clean_database: AsyncEngine, store: ObjectStore, database_url: str
) -> None:
    # The committer keeps its connection between batches; if the database drops it meanwhile (a restart), the next
    # bulk statement fails on it and the write runs again on a checked connection: nothing lost, its own outcome.
    writes = GroupCommit(create_sessionmaker(clean_database), max_concurrent=1, linger=2.0)
    assert await writes.run_bulk(store.put_sessions, session_put("NL", "CPO", "S1", charging_session("S1")))
    other = create_engine(database_url)
    try:
        async with other.connect() as connection:
            killed = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            )
    finally:
        await other.dispose()
    assert killed
    put = session_put("NL", "CPO", "S2", charging_session("S2"))
    assert await asyncio.wait_for(writes.run_bulk(store.put_sessions, put), timeout=10) is True
    assert await _count(clean_database, SessionRow) == 2
