"""CDRs in the store: kept byte for byte, immutable, replays accepted, conflicts refused, credit CDRs linked."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.objects.models import CdrRow
from hub.objects.service import ObjectStore
from hub.platform.web import OcpiError
from tests.hub.objects.builders import cdr, dump, example, load


async def test_store_then_replay(db: AsyncSession, store: ObjectStore) -> None:
    body = cdr(emsp=("de", "msp"))
    stored = await store.store_cdr(db, "NL", "CPO", body)
    assert (stored.id, stored.created, stored.emsp) == ("CDR1", True, ("DE", "MSP"))
    replay = await store.store_cdr(db, "nl", "cpo", body)
    assert (replay.id, replay.created, replay.emsp) == ("CDR1", False, ("DE", "MSP"))
    assert await store.get_cdr(db, "NL", "CPO", "cdr1") == body


async def test_a_reformatted_replay_is_accepted_and_changes_nothing(db: AsyncSession, store: ObjectStore) -> None:
    body = cdr()
    await store.store_cdr(db, "NL", "CPO", body)
    # Other key order, whitespace, an explicit null and 4.0 / 4 instead of 4.00: the same CDR.
    value = dict(reversed(load(body).items()))
    value["total_cost"] = {"excl_vat": Decimal("4.0"), "incl_vat": 4}
    reformatted = msgspec.json.format(dump({"remark": None, **value}), indent=2)
    assert reformatted != body
    assert not (await store.store_cdr(db, "NL", "CPO", reformatted)).created
    assert await store.get_cdr(db, "NL", "CPO", "CDR1") == body


async def test_different_content_under_the_same_id_is_refused(db: AsyncSession, store: ObjectStore) -> None:
    body = cdr(total="4.00")
    await store.store_cdr(db, "NL", "CPO", body)
    with pytest.raises(OcpiError) as error:
        await store.store_cdr(db, "NL", "CPO", cdr(total="4.01"))
    assert error.value.status_code == 2001
    assert "already exists with different content" in error.value.message
    assert await store.get_cdr(db, "NL", "CPO", "CDR1") == body
    # The same id of another CPO is another CDR.
    assert (await store.store_cdr(db, "BE", "CPO", cdr(country_code="BE", total="4.01"))).created


async def test_owner_must_be_the_sender_and_the_body_valid(db: AsyncSession, store: ObjectStore) -> None:
    with pytest.raises(OcpiError) as error:
        await store.store_cdr(db, "NL", "XXX", cdr())
    assert error.value.status_code == 2001
    with pytest.raises(OcpiError) as error:
        await store.store_cdr(db, "NL", "CPO", cdr(charging_periods=[]))
    assert (error.value.status_code, "charging_periods" in error.value.message) == (2001, True)
    with pytest.raises(OcpiError) as error:
        await store.store_cdr(db, "NL", "CPO", b'{"id": "CDR1", ')
    assert error.value.http_status == 400


async def test_credit_cdrs_are_linked_to_the_original(db: AsyncSession, store: ObjectStore) -> None:
    await store.store_cdr(db, "NL", "CPO", cdr("CDR1"))
    with pytest.raises(OcpiError) as error:
        await store.store_cdr(db, "NL", "CPO", cdr("CDR1-C", total="-4.00", credit=True))
    assert error.value.status_code == 2001
    assert "credit_reference_id" in error.value.message
    credit = await store.store_cdr(
        db, "NL", "CPO", cdr("CDR1-C", total="-4.00", credit=True, credit_reference_id="cdr1")
    )
    assert credit.created
    rows = (
        await db.execute(select(CdrRow.cdr_id, CdrRow.credit, CdrRow.credit_reference_id).order_by(CdrRow.id))
    ).all()
    assert [tuple(row) for row in rows] == [("CDR1", False, None), ("CDR1-C", True, "CDR1")]


async def test_the_specification_example(db: AsyncSession, store: ObjectStore) -> None:
    body = example("cdr_example.json")
    stored = await store.store_cdr(db, "BE", "BEC", body)
    assert (stored.id, stored.emsp) == ("12345", ("DE", "TNM"))
    assert await store.get_cdr(db, "BE", "BEC", "12345") == body
    session_id = await db.scalar(select(CdrRow.session_id))
    assert session_id is None
