"""Locations in the store: PUT/PATCH of Locations, EVSEs and Connectors, parent last_updated, ids, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hub.objects.models import LocationRow
from hub.objects.service import Change, ObjectStore
from hub.platform.db import create_sessionmaker
from hub.platform.web import OcpiError
from tests.hub.objects.builders import connector, dump, evse, example, load, location

Call = Callable[[], Awaitable[Change]]

T0 = "2026-01-01T10:00:00Z"
T1 = "2026-01-01T11:00:00Z"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


async def stored_row(db: AsyncSession) -> LocationRow:
    return (await db.scalars(select(LocationRow))).one()


async def test_put_creates_then_replaces(db: AsyncSession, store: ObjectStore) -> None:
    first = await store.put_location(db, "NL", "CPO", "LOC1", location(name="First"))
    assert first.created
    assert first.last_updated == at(T0)
    second = await store.put_location(db, "NL", "CPO", "LOC1", location(name="Second", last_updated=T1))
    assert not second.created
    stored = await store.get_location(db, "NL", "CPO", "LOC1")
    assert stored is not None
    assert load(stored)["name"] == "Second"
    row = await stored_row(db)
    assert (row.country_code, row.party_id, row.location_id, row.last_updated) == ("NL", "CPO", "LOC1", at(T1))


async def test_a_put_is_kept_byte_for_byte(db: AsyncSession, store: ObjectStore) -> None:
    base = location()
    # Unknown fields, number formatting, spacing and the DateTime text as the partner wrote them.
    body = base[:-1] + b',\n  "x_vendor": {"fee": 1.50, "ratio": 1E+2},  "last_updated": "2026-01-01T10:00:00.123"}'
    change = await store.put_location(db, "nl", "cpo", "loc1", body)
    assert change.data == body
    assert await store.get_location(db, "NL", "CPO", "LOC1") == body

    # A later PATCH re-encodes the merged object but keeps the unknown field and the number as written.
    patched = await store.patch_location(
        db, "NL", "CPO", "LOC1", b'{"name": "New", "last_updated": "' + T1.encode() + b'"}'
    )
    assert b'"fee":1.50' in patched.data
    assert b'"x_vendor"' in patched.data
    assert load(patched.data)["name"] == "New"


async def test_keys_are_case_insensitive_and_keep_the_original_spelling(db: AsyncSession, store: ObjectStore) -> None:
    body = location("Loc-a", country_code="nl", party_id="Cpo")
    assert (await store.put_location(db, "NL", "CPO", "LOC-A", body)).created
    assert not (await store.put_location(db, "nl", "cpo", "loc-a", body)).created
    assert await store.get_location(db, "Nl", "cPo", "LOC-a") == body
    row = await stored_row(db)
    assert (row.country_code, row.party_id, row.location_id) == ("NL", "CPO", "LOC-A")


@pytest.mark.parametrize(
    ("url", "field"),
    [(("BE", "CPO", "LOC1"), "country_code"), (("NL", "XYZ", "LOC1"), "party_id"), (("NL", "CPO", "LOC2"), "id")],
)
async def test_url_ids_must_match_the_body(
    db: AsyncSession, store: ObjectStore, url: tuple[str, str, str], field: str
) -> None:
    with pytest.raises(OcpiError) as error:
        await store.put_location(db, *url, location())
    assert error.value.status_code == 2001
    assert field in error.value.message
    with pytest.raises(OcpiError) as error:
        await store.patch_location(
            db, *url, dump({"country_code": "NL", "party_id": "CPO", "id": "LOC1", "last_updated": T1})
        )
    assert error.value.status_code == 2001
    assert field in error.value.message


async def test_sub_object_ids_must_match_the_url(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    calls: list[Call] = [
        lambda: store.put_evse(db, "NL", "CPO", "LOC1", "EVSE9", dump(evse("EVSE1"))),
        lambda: store.patch_evse(db, "NL", "CPO", "LOC1", "EVSE1", dump({"uid": "EVSE2", "last_updated": T1})),
        lambda: store.put_connector(db, "NL", "CPO", "LOC1", "EVSE1", "3", dump(connector("1"))),
        lambda: store.patch_connector(db, "NL", "CPO", "LOC1", "EVSE1", "1", dump({"id": "2", "last_updated": T1})),
    ]
    for call in calls:
        with pytest.raises(OcpiError) as error:
            await call()
        assert error.value.status_code == 2001
        assert "does not match" in error.value.message


async def test_invalid_json_is_http_400_and_a_missing_field_is_named(db: AsyncSession, store: ObjectStore) -> None:
    with pytest.raises(OcpiError) as error:
        await store.put_location(db, "NL", "CPO", "LOC1", b'{"id": "LOC1",')
    assert (error.value.status_code, error.value.http_status) == (2001, 400)

    body = dump({k: v for k, v in load(location()).items() if k != "city"})
    with pytest.raises(OcpiError) as error:
        await store.put_location(db, "NL", "CPO", "LOC1", body)
    assert (error.value.status_code, error.value.http_status) == (2001, 200)
    assert "city" in error.value.message


async def test_every_patch_needs_last_updated(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    calls: list[Call] = [
        lambda: store.patch_location(db, "NL", "CPO", "LOC1", b'{"name": "x"}'),
        lambda: store.patch_evse(db, "NL", "CPO", "LOC1", "EVSE1", b'{"status": "CHARGING"}'),
        lambda: store.patch_connector(db, "NL", "CPO", "LOC1", "EVSE1", "1", b'{"tariff_ids": ["T2"]}'),
    ]
    for call in calls:
        with pytest.raises(OcpiError) as error:
            await call()
        assert error.value.status_code == 2001
        assert "last_updated" in error.value.message


async def test_unknown_locations_evses_and_connectors_are_2003(db: AsyncSession, store: ObjectStore) -> None:
    patch = dump({"status": "CHARGING", "last_updated": T1})
    with pytest.raises(OcpiError) as error:
        await store.patch_location(db, "NL", "CPO", "NOPE", dump({"name": "x", "last_updated": T1}))
    assert error.value.status_code == 2003
    with pytest.raises(OcpiError) as error:
        await store.put_evse(db, "NL", "CPO", "NOPE", "EVSE1", dump(evse("EVSE1")))
    assert error.value.status_code == 2003
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    calls: list[Call] = [
        lambda: store.patch_evse(db, "NL", "CPO", "LOC1", "EVSE9", patch),
        lambda: store.put_connector(db, "NL", "CPO", "LOC1", "EVSE9", "1", dump(connector("1"))),
        lambda: store.patch_connector(
            db, "NL", "CPO", "LOC1", "EVSE1", "9", dump({"tariff_ids": [], "last_updated": T1})
        ),
    ]
    for call in calls:
        with pytest.raises(OcpiError) as error:
            await call()
        assert error.value.status_code == 2003


async def test_patch_location_changes_only_the_given_fields(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    change = await store.patch_location(db, "NL", "CPO", "LOC1", dump({"name": "Renamed", "last_updated": T1}))
    assert not change.created
    assert change.last_updated == at(T1)
    stored = load(await store.get_location(db, "NL", "CPO", "LOC1") or b"")
    assert stored == {**load(location()), "name": "Renamed", "last_updated": T1}
    assert (await stored_row(db)).last_updated == at(T1)


async def test_evse_status_patch_moves_the_location_last_updated(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    change = await store.patch_evse(db, "NL", "CPO", "LOC1", "evse1", dump({"status": "CHARGING", "last_updated": T1}))
    assert load(change.data)["status"] == "CHARGING"
    assert change.last_updated == at(T1)
    stored = load(await store.get_location(db, "NL", "CPO", "LOC1") or b"")
    assert [e["status"] for e in stored["evses"]] == ["CHARGING", "AVAILABLE"]
    assert stored["evses"][0]["last_updated"] == T1
    assert stored["evses"][1]["last_updated"] == T0
    assert stored["last_updated"] == T1
    assert (await stored_row(db)).last_updated == at(T1)


async def test_connector_patch_moves_the_evse_and_location_last_updated(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    change = await store.patch_connector(
        db, "NL", "CPO", "LOC1", "EVSE2", "2", dump({"tariff_ids": ["T9", "T10"], "last_updated": T1})
    )
    assert load(change.data) == {**connector("2"), "tariff_ids": ["T9", "T10"], "last_updated": T1}
    stored = load(await store.get_location(db, "NL", "CPO", "LOC1") or b"")
    assert [c["tariff_ids"] for c in stored["evses"][1]["connectors"]] == [["T1"], ["T9", "T10"]]
    assert stored["evses"][1]["last_updated"] == T1
    assert stored["evses"][0]["last_updated"] == T0
    assert stored["last_updated"] == T1


async def test_an_older_child_never_moves_its_parents_back(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location(last_updated=T1))
    earlier = "2026-01-01T09:00:00Z"
    await store.patch_evse(db, "NL", "CPO", "LOC1", "EVSE1", dump({"status": "BLOCKED", "last_updated": earlier}))
    stored = load(await store.get_location(db, "NL", "CPO", "LOC1") or b"")
    assert stored["evses"][0]["last_updated"] == earlier  # the patched object takes the PATCH's value
    assert stored["last_updated"] == T1


async def test_put_evse_adds_or_replaces_an_evse(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    new = dump(evse("EVSE3", last_updated=T1))
    change = await store.put_evse(db, "NL", "CPO", "LOC1", "EVSE3", new)
    assert change.created
    assert change.data == new
    replaced = dump(evse("evse1", last_updated=T1, status="OUTOFORDER"))
    assert not (await store.put_evse(db, "NL", "CPO", "LOC1", "EVSE1", replaced)).created
    stored = load(await store.get_location(db, "NL", "CPO", "LOC1") or b"")
    assert [(e["uid"], e["status"]) for e in stored["evses"]] == [
        ("evse1", "OUTOFORDER"),
        ("EVSE2", "AVAILABLE"),
        ("EVSE3", "AVAILABLE"),
    ]
    assert stored["last_updated"] == T1
    assert await store.get_location(db, "NL", "CPO", "LOC1", "EVSE3") == new


async def test_put_connector_adds_or_replaces_a_connector(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    assert (
        await store.put_connector(db, "NL", "CPO", "LOC1", "EVSE1", "3", dump(connector("3", last_updated=T1)))
    ).created
    body = dump(connector("1", last_updated=T1, max_amperage=32))
    assert not (await store.put_connector(db, "NL", "CPO", "LOC1", "EVSE1", "1", body)).created
    stored = load(await store.get_location(db, "NL", "CPO", "LOC1") or b"")
    assert [(c["id"], c["max_amperage"]) for c in stored["evses"][0]["connectors"]] == [("1", 32), ("2", 16), ("3", 16)]
    assert stored["evses"][0]["last_updated"] == stored["last_updated"] == T1
    assert await store.get_location(db, "NL", "CPO", "LOC1", "EVSE1", "1") == body


async def test_evse_removed_by_patch_stays_in_the_location(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    await store.patch_evse(db, "NL", "CPO", "LOC1", "EVSE2", dump({"status": "REMOVED", "last_updated": T1}))
    stored = load(await store.get_location(db, "NL", "CPO", "LOC1") or b"")
    assert [(e["uid"], e["status"]) for e in stored["evses"]] == [("EVSE1", "AVAILABLE"), ("EVSE2", "REMOVED")]
    assert load(await store.get_location(db, "NL", "CPO", "LOC1", "evse2") or b"")["status"] == "REMOVED"


async def test_get_of_missing_objects_is_none(db: AsyncSession, store: ObjectStore) -> None:
    assert await store.get_location(db, "NL", "CPO", "LOC1") is None
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    assert await store.get_location(db, "NL", "CPO", "LOC1", "EVSE9") is None
    assert await store.get_location(db, "NL", "CPO", "LOC1", "EVSE1", "9") is None


async def test_a_patch_that_would_break_the_location_is_refused(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location())
    body = dump({"connectors": [{"id": "1"}], "last_updated": T1})
    with pytest.raises(OcpiError) as error:
        await store.patch_evse(db, "NL", "CPO", "LOC1", "EVSE1", body)
    assert error.value.status_code == 2001


async def test_the_specification_examples(db: AsyncSession, store: ObjectStore) -> None:
    body = example("location_example.json")
    assert (await store.put_location(db, "BE", "BEC", "LOC1", body)).created
    assert await store.get_location(db, "BE", "BEC", "LOC1") == body
    await store.patch_evse(db, "BE", "BEC", "LOC1", "3256", example("location_patch_example_status.json"))
    await store.patch_connector(db, "BE", "BEC", "LOC1", "3257", "1", example("location_patch_example_tariff.json"))
    await store.patch_location(db, "BE", "BEC", "LOC1", example("location_patch_example_location.json"))
    stored = load(await store.get_location(db, "BE", "BEC", "LOC1") or b"")
    assert stored["name"] == "Interparking Gent Zuid"
    assert stored["evses"][0]["status"] == "CHARGING"
    assert stored["evses"][1]["connectors"][0]["tariff_ids"] == ["15"]
    assert stored["evses"][1]["last_updated"] == stored["last_updated"] == "2019-06-24T12:39:09Z"
    # The example EVSE of the "add an EVSE" PUT is known to be invalid (hub notes §7): refused, nothing changes.
    with pytest.raises(OcpiError) as error:
        await store.put_evse(db, "BE", "BEC", "LOC1", "3256", example("location_put_example_add_evse.json"))
    assert error.value.status_code == 2001


async def test_two_first_puts_at_once_end_as_one_create_and_one_replace(
    clean_database: AsyncEngine, store: ObjectStore
) -> None:
    sessions = create_sessionmaker(clean_database)
    async with sessions() as first, sessions() as second:
        assert (await store.put_location(first, "NL", "CPO", "LOC1", location(name="First"))).created
        # The second insert waits for the first transaction (unique key), then replaces what it committed.
        racing = asyncio.create_task(store.put_location(second, "NL", "CPO", "LOC1", location(name="Second")))
        await asyncio.sleep(0.2)
        assert not racing.done()
        await first.commit()
        assert not (await racing).created
        await second.commit()
    async with sessions() as check:
        assert load(await store.get_location(check, "NL", "CPO", "LOC1") or b"")["name"] == "Second"


async def test_concurrent_evse_patches_of_one_location_lose_nothing(
    clean_database: AsyncEngine, store: ObjectStore
) -> None:
    sessions = create_sessionmaker(clean_database)
    async with sessions.begin() as setup:
        await store.put_location(setup, "NL", "CPO", "LOC1", location())
    async with sessions() as first, sessions() as second:
        await store.patch_evse(first, "NL", "CPO", "LOC1", "EVSE1", dump({"status": "CHARGING", "last_updated": T1}))
        # The second read-modify-write waits for the first one's row lock instead of overwriting its change.
        racing = asyncio.create_task(
            store.patch_evse(second, "NL", "CPO", "LOC1", "EVSE2", dump({"status": "BLOCKED", "last_updated": T1}))
        )
        await asyncio.sleep(0.2)
        assert not racing.done()
        await first.commit()
        await racing
        await second.commit()
    async with sessions() as check:
        stored = load(await store.get_location(check, "NL", "CPO", "LOC1") or b"")
    assert [e["status"] for e in stored["evses"]] == ["CHARGING", "BLOCKED"]
