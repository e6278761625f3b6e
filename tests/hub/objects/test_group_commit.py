"""Group commit (hub.platform.groupcommit): concurrent writes share transactions, yet each request gets exactly the
outcome it would have had alone. Runs on PostgreSQL and SQLite, like the rest of the store's tests."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hub.objects.errors import CdrConflictError
from hub.objects.models import CdrRow, SessionRow
from hub.objects.service import Change, ObjectStore
from hub.platform.db import create_sessionmaker
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
