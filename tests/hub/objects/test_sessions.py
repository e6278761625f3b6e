"""Sessions in the store: PUT replaces, PATCH appends charging periods, and the eMSP a session belongs to."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from hub.objects.service import ObjectStore
from hub.platform.web import OcpiError
from tests.hub.objects.builders import charging_session, dump, example, load, period


async def test_patch_appends_charging_periods_and_replaces_the_rest(db: AsyncSession, store: ObjectStore) -> None:
    assert (await store.put_session(db, "NL", "CPO", "S1", charging_session())).created
    body = dump(
        {
            "kwh": 3.25,
            "charging_periods": [period("2026-01-01T10:15:00Z", "1.75")],
            "total_cost": {"excl_vat": 0.60, "incl_vat": 0.66},
            "last_updated": "2026-01-01T10:15:00Z",
        }
    )
    change = await store.patch_session(db, "NL", "CPO", "S1", body)
    assert not change.created
    stored = await store.get_session(db, "NL", "CPO", "S1")
    assert stored == change.data
    session = load(stored or b"")
    assert [p["start_date_time"] for p in session["charging_periods"]] == [
        "2026-01-01T10:00:00Z",
        "2026-01-01T10:15:00Z",
    ]
    assert b'"total_cost":{"excl_vat":0.6,"incl_vat":0.66}' in (stored or b"")
    assert session["last_updated"] == "2026-01-01T10:15:00Z"

    # An empty list adds nothing; a new total_cost replaces the old one as a whole.
    await store.patch_session(
        db,
        "NL",
        "CPO",
        "S1",
        b'{"charging_periods": [], "total_cost": {"excl_vat": 0.80}, "last_updated": "2026-01-01T10:20:00Z"}',
    )
    session = load(await store.get_session(db, "NL", "CPO", "S1") or b"")
    assert len(session["charging_periods"]) == 2
    assert session["total_cost"] == {"excl_vat": load(b"0.80")}
    assert str(session["total_cost"]["excl_vat"]) == "0.80"


async def test_a_put_replaces_the_periods(db: AsyncSession, store: ObjectStore) -> None:
    await store.put_session(db, "NL", "CPO", "S1", charging_session())
    await store.put_session(db, "NL", "CPO", "S1", charging_session(charging_periods=[], status="COMPLETED"))
    session = load(await store.get_session(db, "NL", "CPO", "S1") or b"")
    assert (session["charging_periods"], session["status"]) == ([], "COMPLETED")


async def test_the_specification_patches(db: AsyncSession, store: ObjectStore) -> None:
    body = example("session_example_2_short_finished.json")
    await store.put_session(db, "BE", "BEC", "101", body)
    await store.patch_session(db, "BE", "BEC", "101", example("session_patch_example_total_cost.json"))
    await store.patch_session(db, "BE", "BEC", "101", example("session_patch_example_charging_period.json"))
    stored = await store.get_session(db, "BE", "BEC", "101") or b""
    session = load(stored)
    assert len(session["charging_periods"]) == 4
    assert session["charging_periods"][-1]["dimensions"] == [{"type": "ENERGY", "volume": 2200}]
    assert b'"kwh":15.00' in stored
    assert b'"total_cost":{"excl_vat":0.80,"incl_vat":0.88}' in stored
    assert session["last_updated"] == "2019-06-23T08:16:02Z"


async def test_session_emsp_comes_from_the_cdr_token(db: AsyncSession, store: ObjectStore) -> None:
    assert await store.session_emsp(db, "NL", "CPO", "S1") is None
    await store.put_session(db, "NL", "CPO", "s1", charging_session("s1", emsp=("de", "msp")))
    assert await store.session_emsp(db, "nl", "cpo", "S1") == ("DE", "MSP")
    # A PUT (or PATCH) naming another token owner moves the session to that eMSP.
    await store.put_session(db, "NL", "CPO", "S1", charging_session("S1", emsp=("FR", "EMP")))
    assert await store.session_emsp(db, "NL", "CPO", "S1") == ("FR", "EMP")


async def test_errors(db: AsyncSession, store: ObjectStore) -> None:
    with pytest.raises(OcpiError) as error:
        await store.patch_session(db, "NL", "CPO", "S1", b'{"kwh": 1, "last_updated": "2026-01-01T10:00:00Z"}')
    assert error.value.status_code == 2001
    assert "unknown session" in error.value.message
    with pytest.raises(OcpiError) as error:
        await store.put_session(db, "NL", "CPO", "S2", charging_session("S1"))
    assert error.value.status_code == 2001
    await store.put_session(db, "NL", "CPO", "S1", charging_session())
    with pytest.raises(OcpiError) as error:
        await store.patch_session(db, "NL", "CPO", "S1", b'{"kwh": 1}')
    assert error.value.status_code == 2001
    with pytest.raises(OcpiError) as error:
        await store.patch_session(db, "NL", "CPO", "S1", b"kwh=1")
    assert (error.value.status_code, error.value.http_status) == (2001, 400)
