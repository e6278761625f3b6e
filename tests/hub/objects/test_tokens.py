"""Tokens in the store: PUT/PATCH by (owner, uid, type), and finding a token's eMSP for open routing."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from hub.objects.service import ObjectStore
from hub.platform.web import OcpiError
from tests.hub.objects.builders import dump, example, load, token


async def test_put_creates_then_replaces_per_uid_and_type(db: AsyncSession, store: ObjectStore) -> None:
    rfid = token("ABC")
    app = token("ABC", token_type="APP_USER")
    assert (await store.put_token(db, "DE", "MSP", "ABC", "RFID", rfid)).created
    assert (await store.put_token(db, "DE", "MSP", "ABC", "APP_USER", app)).created
    assert not (await store.put_token(db, "de", "msp", "abc", "RFID", token("ABC", issuer="Other"))).created
    assert load(await store.get_token(db, "DE", "MSP", "ABC") or b"")["issuer"] == "Other"  # type defaults to RFID
    assert await store.get_token(db, "DE", "MSP", "abc", "APP_USER") == app
    assert await store.get_token(db, "DE", "MSP", "ABC", "OTHER") is None


async def test_patch_merges_into_the_stored_token(db: AsyncSession, store: ObjectStore) -> None:
    body = example("token_put_example.json")
    await store.put_token(db, "NL", "TNM", "012345678", "RFID", body)
    change = await store.patch_token(db, "NL", "TNM", "012345678", "RFID", example("token_patch_example.json"))
    assert not change.created
    stored = load(await store.get_token(db, "NL", "TNM", "012345678") or b"")
    assert stored == {**load(body), "valid": False, "last_updated": "2019-06-19T02:11:11Z"}
    assert load(change.data) == stored


async def test_ids_must_match_and_unknown_tokens_cannot_be_patched(db: AsyncSession, store: ObjectStore) -> None:
    for url in [("NL", "MSP", "ABC", "RFID"), ("DE", "XXX", "ABC", "RFID"), ("DE", "MSP", "XYZ", "RFID")]:
        with pytest.raises(OcpiError) as error:
            await store.put_token(db, *url, token("ABC"))
        assert error.value.status_code == 2001
    with pytest.raises(OcpiError) as error:
        await store.put_token(db, "DE", "MSP", "ABC", "APP_USER", token("ABC"))
    assert (error.value.status_code, "type" in error.value.message) == (2001, True)

    patch = dump({"valid": False, "last_updated": "2026-01-02T00:00:00Z"})
    with pytest.raises(OcpiError) as error:
        await store.patch_token(db, "DE", "MSP", "ABC", "RFID", patch)
    assert error.value.status_code == 2001
    assert "unknown token" in error.value.message
    await store.put_token(db, "DE", "MSP", "ABC", "RFID", token("ABC"))
    with pytest.raises(OcpiError) as error:
        await store.patch_token(db, "DE", "MSP", "ABC", "RFID", b'{"valid": false}')
    assert error.value.status_code == 2001
    with pytest.raises(OcpiError) as error:
        await store.patch_token(db, "DE", "MSP", "ABC", "RFID", dump({"type": "APP_USER", "last_updated": "x"}))
    assert error.value.status_code == 2001
