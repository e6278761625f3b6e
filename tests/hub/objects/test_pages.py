""" "GET All" pages from the store: offset/limit/total, date windows, stable order and who may see what."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from hub.objects.service import ObjectStore, Viewer
from hub.platform.web import OcpiError
from tests.hub.objects.builders import cdr, charging_session, dump, load, location, tariff, token

EVERYONE = Viewer(parties=frozenset({("NL", "HUB", "HUB")}))


def emsp(country_code: str, party_id: str, *, owners: frozenset[tuple[str, str]] | None = None) -> Viewer:
    return Viewer(parties=frozenset({(country_code, party_id, "EMSP")}), permitted_owners=owners)


def at(hour: int) -> datetime:
    return datetime(2026, 1, 1, hour, tzinfo=UTC)


def ids(items: list[bytes], field: str = "id") -> list[str]:
    return [load(item)[field] for item in items]


async def test_offset_limit_and_total(db: AsyncSession, store: ObjectStore) -> None:
    for n in range(1, 6):
        await store.put_tariff(db, "NL", "CPO", f"T{n}", tariff(f"T{n}"))
    pages = [await store.page(db, "tariffs", viewer=EVERYONE, offset=offset, limit=2) for offset in (0, 2, 4, 6)]
    assert [ids(p.items) for p in pages] == [["T1", "T2"], ["T3", "T4"], ["T5"], []]
    assert {p.total for p in pages} == {5}
    empty = await store.page(db, "tariffs", viewer=EVERYONE, limit=0)
    assert (empty.items, empty.total) == ([], 5)


async def test_paging_follows_creation_order_while_objects_change(db: AsyncSession, store: ObjectStore) -> None:
    for n in range(1, 4):
        await store.put_token(db, "DE", "MSP", f"U{n}", "RFID", token(f"U{n}", last_updated=f"2026-01-01T1{n}:00:00Z"))
    # Updating the oldest object does not move it; a new one lands on the last page only.
    await store.put_token(db, "DE", "MSP", "U1", "RFID", token("U1", last_updated="2026-01-02T10:00:00Z"))
    await store.patch_token(db, "DE", "MSP", "U2", "RFID", b'{"valid": false, "last_updated": "2026-01-03T10:00:00Z"}')
    await store.put_token(db, "DE", "MSP", "U0", "RFID", token("U0", last_updated="2025-12-31T10:00:00Z"))
    page = await store.page(db, "tokens", viewer=EVERYONE, limit=10)
    assert ids(page.items, "uid") == ["U1", "U2", "U3", "U0"]
    assert load(page.items[1])["valid"] is False
    # A tariff deleted and PUT again is a new object: it moves to the end.
    await store.put_tariff(db, "NL", "CPO", "A", tariff("A"))
    await store.put_tariff(db, "NL", "CPO", "B", tariff("B"))
    await store.delete_tariff(db, "NL", "CPO", "A")
    await store.put_tariff(db, "NL", "CPO", "A", tariff("A"))
    assert ids((await store.page(db, "tariffs", viewer=EVERYONE, limit=10)).items) == ["B", "A"]


async def test_date_from_is_inclusive_and_date_to_exclusive(db: AsyncSession, store: ObjectStore) -> None:
    for hour in (10, 11, 12):
        await store.put_tariff(
            db, "NL", "CPO", f"T{hour}", tariff(f"T{hour}", last_updated=f"2026-01-01T{hour}:00:00Z")
        )

    async def window(date_from: datetime | None, date_to: datetime | None) -> tuple[list[str], int]:
        page = await store.page(db, "tariffs", viewer=EVERYONE, date_from=date_from, date_to=date_to, limit=1)
        everything = await store.page(db, "tariffs", viewer=EVERYONE, date_from=date_from, date_to=date_to, limit=9)
        assert page.total == everything.total == len(everything.items)
        return ids(everything.items), page.total

    assert await window(at(11), None) == (["T11", "T12"], 2)
    assert await window(None, at(12)) == (["T10", "T11"], 2)
    assert await window(at(11), at(12)) == (["T11"], 1)
    assert await window(at(13), None) == ([], 0)


async def test_a_child_change_brings_its_location_into_a_later_window(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_location(db, "NL", "CPO", "LOC1", location(last_updated="2026-01-01T10:00:00Z"))
    await store.put_location(db, "NL", "CPO", "LOC2", location("LOC2", last_updated="2026-01-01T10:00:00Z"))
    await store.patch_connector(
        db, "NL", "CPO", "LOC2", "EVSE1", "1", b'{"tariff_ids": ["T2"], "last_updated": "2026-01-01T12:30:00Z"}'
    )
    page = await store.page(db, "locations", viewer=EVERYONE, date_from=at(12), limit=10)
    assert (ids(page.items), page.total) == (["LOC2"], 1)


async def test_only_permitted_owners_are_shown(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_token(db, "DE", "MSP", "A", "RFID", token("A"))
    await store.put_token(db, "NL", "EMP", "B", "RFID", token("B", country_code="NL", party_id="EMP"))
    await store.put_tariff(db, "NL", "CPO", "T1", tariff("T1"))
    cpo = Viewer(parties=frozenset({("FR", "CPO", "CPO")}), permitted_owners=frozenset({("de", "msp"), ("NL", "CPO")}))
    page = await store.page(db, "tokens", viewer=cpo, limit=10)
    assert (ids(page.items, "uid"), page.total) == (["A"], 1)
    assert ids((await store.page(db, "tariffs", viewer=cpo, limit=10)).items) == ["T1"]
    everyone = Viewer(parties=cpo.parties, permitted_owners=None)
    assert ids((await store.page(db, "tokens", viewer=everyone, limit=10)).items, "uid") == ["A", "B"]
    nobody = Viewer(parties=cpo.parties, permitted_owners=frozenset())
    assert (await store.page(db, "tokens", viewer=nobody, limit=10)).total == 0


async def test_sessions_and_cdrs_only_reach_their_emsp(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_session(db, "NL", "CPO", "S1", charging_session("S1", emsp=("de", "msp")))
    await store.put_session(db, "NL", "CPO", "S2", charging_session("S2", emsp=("FR", "EMP")))
    await store.put_session(db, "BE", "CPO", "S3", charging_session("S3", country_code="BE", emsp=("DE", "MSP")))
    await store.store_cdr(db, "NL", "CPO", cdr("C1", emsp=("DE", "MSP")))
    await store.store_cdr(db, "NL", "CPO", cdr("C2", emsp=("FR", "EMP")))

    de = emsp("DE", "MSP")
    assert ids((await store.page(db, "sessions", viewer=de, limit=10)).items) == ["S1", "S3"]
    assert ids((await store.page(db, "cdrs", viewer=de, limit=10)).items) == ["C1"]
    only_nl = emsp("DE", "MSP", owners=frozenset({("NL", "CPO")}))
    assert ids((await store.page(db, "sessions", viewer=only_nl, limit=10)).items) == ["S1"]
    both = Viewer(parties=frozenset({("DE", "MSP", "EMSP"), ("fr", "emp", "EMSP")}))
    assert (await store.page(db, "sessions", viewer=both, limit=10)).total == 3
    # The hub itself, or the CPO, is no eMSP of these sessions: nothing (Sessions and CDRs are never broadcast).
    cpo = Viewer(parties=frozenset({("NL", "CPO", "CPO")}))
    assert (await store.page(db, "sessions", viewer=cpo, limit=10)).total == 0
    assert (await store.page(db, "cdrs", viewer=EVERYONE, limit=10)).total == 0


async def test_unpublished_locations_only_reach_holders_of_an_allowed_token(
    db: AsyncSession, store: ObjectStore
) -> None:
    def private(location_id: str, *allowed: dict[str, Any]) -> bytes:
        return location(location_id, publish=False, publish_allowed_to=list(allowed))

    await store.put_location(db, "NL", "CPO", "PUBLIC", location("PUBLIC"))
    await store.put_location(db, "NL", "CPO", "BY-UID", private("BY-UID", {"uid": "abc", "type": "RFID"}))
    await store.put_location(
        db, "NL", "CPO", "BY-CARD", private("BY-CARD", {"visual_number": "12345-67", "issuer": "NewMotion"})
    )
    await store.put_location(db, "NL", "CPO", "BY-GROUP", private("BY-GROUP", {"group_id": "Fleet-1"}))
    await store.put_location(db, "NL", "CPO", "NOBODY", private("NOBODY"))

    await store.put_token(db, "DE", "MSP", "ABC", "RFID", token("ABC"))
    await store.put_token(db, "DE", "APP", "ABC", "APP_USER", token("ABC", party_id="APP", token_type="APP_USER"))
    await store.put_token(
        db, "NL", "EMP", "X1", "RFID", token("X1", country_code="NL", party_id="EMP", visual_number="12345-67")
    )
    await store.put_token(
        db,
        "NL",
        "NMO",
        "X2",
        "RFID",
        token("X2", country_code="NL", party_id="NMO", visual_number="12345-67", issuer="NewMotion"),
    )
    await store.put_token(
        db, "FR", "GRP", "G1", "RFID", token("G1", country_code="FR", party_id="GRP", group_id="FLEET-1")
    )

    async def visible(viewer: Viewer) -> list[str]:
        page = await store.page(db, "locations", viewer=viewer, limit=10)
        assert page.total == len(page.items)
        return ids(page.items)

    assert await visible(emsp("de", "msp")) == ["PUBLIC", "BY-UID"]
    assert await visible(emsp("DE", "APP")) == ["PUBLIC"]  # same uid, other type
    assert await visible(emsp("NL", "EMP")) == ["PUBLIC"]  # visual number matches, issuer does not
    assert await visible(emsp("NL", "NMO")) == ["PUBLIC", "BY-CARD"]
    assert await visible(emsp("FR", "GRP")) == ["PUBLIC", "BY-GROUP"]
    assert await visible(emsp("BE", "NEW")) == ["PUBLIC"]
    assert await visible(Viewer(parties=frozenset())) == ["PUBLIC"]
    platform = Viewer(parties=frozenset({("DE", "MSP", "EMSP"), ("FR", "GRP", "EMSP")}))
    assert await visible(platform) == ["PUBLIC", "BY-UID", "BY-GROUP"]

    # PATCHes change who may see a Location.
    await store.patch_location(
        db,
        "NL",
        "CPO",
        "BY-UID",
        dump({"publish_allowed_to": [{"group_id": "fleet-1"}], "last_updated": "2026-01-02T00:00:00Z"}),
    )
    await store.patch_location(db, "NL", "CPO", "NOBODY", b'{"publish": true, "last_updated": "2026-01-02T00:00:00Z"}')
    assert await visible(emsp("DE", "MSP")) == ["PUBLIC", "NOBODY"]
    assert await visible(emsp("FR", "GRP")) == ["PUBLIC", "BY-UID", "BY-GROUP", "NOBODY"]
    # A new PUT replaces the audience too.
    await store.put_location(db, "NL", "CPO", "BY-GROUP", private("BY-GROUP", {"uid": "ABC", "type": "RFID"}))
    assert await visible(emsp("DE", "MSP")) == ["PUBLIC", "BY-GROUP", "NOBODY"]


async def test_bad_arguments(db: AsyncSession, store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="commands"):
        await store.page(db, "commands", viewer=EVERYONE, limit=10)  # type: ignore[arg-type]
    with pytest.raises(OcpiError, match="negative"):
        await store.page(db, "tokens", viewer=EVERYONE, offset=-1, limit=10)


async def test_the_next_page_seeks_past_the_last_id(db: AsyncSession, store: ObjectStore) -> None:
    """The hub's own next links carry the last id served: the next page starts right after it, even when an earlier
    object was deleted in between (an OFFSET would then skip one)."""
    for n in range(1, 6):
        await store.put_tariff(db, "NL", "CPO", f"T{n}", tariff(f"T{n}"))
    first = await store.page(db, "tariffs", viewer=EVERYONE, limit=2)
    assert ids(first.items) == ["T1", "T2"]
    assert first.last_id is not None
    await store.delete_tariff(db, "NL", "CPO", "T1")
    by_id = await store.page(db, "tariffs", viewer=EVERYONE, offset=2, limit=2, after_id=first.last_id)
    by_offset = await store.page(db, "tariffs", viewer=EVERYONE, offset=2, limit=2)
    assert ids(by_id.items) == ["T3", "T4"]
    assert ids(by_offset.items) == ["T4", "T5"]  # what a plain OFFSET gives after the delete: T3 skipped
    assert by_id.total == 4


async def test_a_crawl_answers_the_total_it_started_with(db: AsyncSession, store: ObjectStore) -> None:
    """The hub's next links carry the first page's X-Total-Count: later pages do not count every object again."""
    for n in range(1, 4):
        await store.put_tariff(db, "NL", "CPO", f"T{n}", tariff(f"T{n}"))
    first = await store.page(db, "tariffs", viewer=EVERYONE, limit=2)
    assert first.total == 3
    await store.put_tariff(db, "NL", "CPO", "T4", tariff("T4"))
    assert first.last_id is not None
    following = await store.page(db, "tariffs", viewer=EVERYONE, limit=2, after_id=first.last_id, total=first.total)
    assert following.total == 3  # the crawl's count; T4 comes with the next incremental sync
    assert ids(following.items) == ["T3", "T4"]
    assert (await store.page(db, "tariffs", viewer=EVERYONE, limit=2)).total == 4  # a new crawl counts again
