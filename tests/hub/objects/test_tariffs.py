"""Tariffs in the store: current version, version history, the tariff valid at a given time, DELETE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.objects.models import TariffVersionRow
from hub.objects.service import ObjectStore
from hub.platform.clock import FixedClock
from hub.platform.web import OcpiError
from tests.hub.objects.builders import example, load, tariff

JAN_1 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)


async def test_put_creates_replaces_and_keeps_every_version(db: AsyncSession, store: ObjectStore) -> None:
    v1 = tariff(price="0.25", last_updated="2026-01-01T10:00:00Z")
    v2 = tariff(price="0.30", last_updated="2026-02-01T10:00:00Z")
    assert (await store.put_tariff(db, "NL", "CPO", "T1", v1)).created
    change = await store.put_tariff(db, "nl", "cpo", "t1", v2)
    assert not change.created
    assert change.last_updated == FEB_1
    assert await store.get_tariff(db, "NL", "CPO", "T1") == v2
    history = await store.tariff_history(db, "NL", "CPO", "T1")
    assert [(v.data, v.last_updated, v.deleted) for v in history] == [(v1, JAN_1, False), (v2, FEB_1, False)]


async def test_tariff_at_gives_the_version_valid_at_that_time(db: AsyncSession, store: ObjectStore) -> None:
    v1 = tariff(price="0.25", last_updated="2026-01-01T10:00:00Z")
    v2 = tariff(price="0.30", last_updated="2026-02-01T10:00:00Z")
    await store.put_tariff(db, "NL", "CPO", "T1", v1)
    await store.put_tariff(db, "NL", "CPO", "T1", v2)
    assert await store.tariff_at(db, "NL", "CPO", "T1", JAN_1 - timedelta(seconds=1)) is None
    assert await store.tariff_at(db, "NL", "CPO", "T1", JAN_1) == v1
    assert await store.tariff_at(db, "NL", "CPO", "T1", FEB_1 - timedelta(microseconds=1)) == v1
    assert await store.tariff_at(db, "NL", "CPO", "T1", FEB_1) == v2
    assert await store.tariff_at(db, "NL", "CPO", "T1", FEB_1 + timedelta(days=300)) == v2
    assert await store.tariff_at(db, "NL", "CPO", "T2", FEB_1) is None


async def test_versions_are_ordered_by_their_own_last_updated(db: AsyncSession, store: ObjectStore) -> None:
    # A late-arriving older version does not hide the newer one at later times.
    newer = tariff(price="0.30", last_updated="2026-02-01T10:00:00Z")
    older = tariff(price="0.25", last_updated="2026-01-01T10:00:00Z")
    await store.put_tariff(db, "NL", "CPO", "T1", newer)
    await store.put_tariff(db, "NL", "CPO", "T1", older)
    assert await store.tariff_at(db, "NL", "CPO", "T1", JAN_1 + timedelta(days=1)) == older
    assert await store.tariff_at(db, "NL", "CPO", "T1", FEB_1) == newer


async def test_delete_removes_the_tariff_and_is_recorded(
    db: AsyncSession, store: ObjectStore, clock: FixedClock
) -> None:
    v1 = tariff(last_updated="2026-01-01T10:00:00Z")
    await store.put_tariff(db, "NL", "CPO", "T1", v1)
    deleted_at = clock.now()
    assert await store.delete_tariff(db, "nl", "cpo", "t1")
    assert await store.get_tariff(db, "NL", "CPO", "T1") is None
    assert await store.tariff_at(db, "NL", "CPO", "T1", deleted_at - timedelta(seconds=1)) == v1
    assert await store.tariff_at(db, "NL", "CPO", "T1", deleted_at) is None
    history = await store.tariff_history(db, "NL", "CPO", "T1")
    assert [(v.data, v.last_updated, v.received_at, v.deleted) for v in history][-1] == (
        None,
        deleted_at,
        deleted_at,
        True,
    )

    # Deleting what is not there changes nothing; a new PUT creates the tariff again.
    assert not await store.delete_tariff(db, "NL", "CPO", "T1")
    assert await db.scalar(select(func.count()).select_from(TariffVersionRow)) == 2
    clock.advance(timedelta(days=1))
    v3 = tariff(price="0.40", last_updated="2026-02-02T07:00:00Z")
    assert (await store.put_tariff(db, "NL", "CPO", "T1", v3)).created
    assert await store.tariff_at(db, "NL", "CPO", "T1", clock.now()) == v3


async def test_put_checks_ids_and_content(db: AsyncSession, store: ObjectStore) -> None:
    with pytest.raises(OcpiError) as error:
        await store.put_tariff(db, "NL", "CPO", "T2", tariff("T1"))
    assert error.value.status_code == 2001
    with pytest.raises(OcpiError) as error:
        await store.put_tariff(db, "NL", "CPO", "T1", tariff(elements=[]))
    assert error.value.status_code == 2001
    assert "elements" in error.value.message
    assert await db.scalar(select(func.count()).select_from(TariffVersionRow)) == 0


async def test_a_specification_tariff_is_kept_byte_for_byte(db: AsyncSession, store: ObjectStore) -> None:
    body = example("tariff_1_simple_2hour.json")
    await store.put_tariff(db, "DE", "ALL", "12", body)
    stored = await store.get_tariff(db, "DE", "ALL", "12")
    assert stored == body
    assert b'"price": 2.00' in body
    assert str(load(stored)["elements"][0]["price_components"][0]["price"]) == "2.00"
