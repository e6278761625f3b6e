"""Composite-key lookups (hub.platform.keysets) select exactly the rows whose keys are given, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import ColumnElement, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.objects.models import TokenRow
from hub.platform.keysets import CHUNK, keep_statistics, keys_in, keys_listed

STAMP = datetime(2026, 12, 1, tzinfo=UTC)
PARTIES = [("NL", "EMA"), ("NL", "EMB"), ("DE", "EMA")]
TYPES = ["RFID", "APP_USER"]


async def _stored(db: AsyncSession) -> set[tuple[str, str, str, str]]:
    keys = {(cc, pid, f"U{n:05d}", TYPES[n % 2]) for cc, pid in PARTIES for n in range(CHUNK)}
    rows = [
        {"country_code": cc, "party_id": pid, "uid": uid, "type": kind, "issuer": "x", "data": b"{}",
         "last_updated": STAMP, "created_at": STAMP, "updated_at": STAMP}
        for cc, pid, uid, kind in sorted(keys)
    ]  # fmt: skip
    await db.execute(insert(TokenRow), rows)
    return keys


async def _found(db: AsyncSession, conditions: list[ColumnElement[bool]]) -> list[tuple[str, str, str, str]]:
    columns = (TokenRow.country_code, TokenRow.party_id, TokenRow.uid, TokenRow.type)
    found: list[tuple[str, str, str, str]] = []
    for condition in conditions:
        found += [(r[0], r[1], r[2], r[3]) for r in await db.execute(select(*columns).where(condition))]
    return found


@pytest.mark.parametrize("lookup", ["keys_in", "keys_listed"])
async def test_exactly_the_given_keys_are_found_across_chunks(db: AsyncSession, lookup: str) -> None:
    stored = await _stored(db)
    columns = (TokenRow.country_code, TokenRow.party_id, TokenRow.uid, TokenRow.type)
    # More than a chunk, with duplicates, keys that mix the columns of two stored keys, and keys not stored at all.
    wanted = sorted(stored)[: CHUNK + 300]
    mixed = [("DE", "EMB", "U00001", "APP_USER"), ("NL", "EMA", "U00001", "RFID"), ("FR", "XYZ", "U00002", "RFID")]
    given = wanted + wanted[:50] + mixed
    conditions = keys_in(db, columns, given) if lookup == "keys_in" else keys_listed(columns, given)

    found = await _found(db, conditions)

    assert sorted(found) == sorted(wanted)  # each once: the duplicates and the mixes select nothing more
    if db.get_bind().dialect.name == "postgresql" and lookup == "keys_in":
        assert len(conditions) == 1  # one query for any number of keys
    else:
        assert len(conditions) == 2  # CHUNK + 300 distinct keys in lists of CHUNK


@pytest.mark.parametrize("lookup", ["keys_in", "keys_listed"])
async def test_no_keys_select_nothing(db: AsyncSession, lookup: str) -> None:
    await _stored(db)
    columns = (TokenRow.country_code, TokenRow.party_id, TokenRow.uid, TokenRow.type)
    conditions = keys_in(db, columns, []) if lookup == "keys_in" else keys_listed(columns, [])
    assert await _found(db, conditions) == []


async def test_statistics_follow_a_growing_table_on_postgresql(db: AsyncSession) -> None:
    # Without them the planner joined unnested keys through a wrong index (hub.platform.keysets).
    if db.get_bind().dialect.name != "postgresql":
        assert await keep_statistics(db, "tokens") is False  # nothing to do elsewhere
        return
    await db.execute(text('ANALYZE "tokens"'))  # statistics of the empty table
    await _stored(db)  # 1,500 rows: well past a quarter more pages than recorded
    assert await keep_statistics(db, "tokens") is True
    assert await keep_statistics(db, "tokens") is False  # fresh now
    pages = await db.scalar(text("SELECT relpages FROM pg_class WHERE oid = 'tokens'::regclass"))
    assert pages is not None
    assert pages > 16
