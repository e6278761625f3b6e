"""PATCH bodies (transport §4.1.4.3): only sent fields are set, ``last_updated`` is always required."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import InvalidPayload, decode, encode

PATCH_TYPES: list[Any] = [ocpi.LocationPatch, ocpi.EvsePatch, ocpi.ConnectorPatch, ocpi.SessionPatch, ocpi.TokenPatch]
STAMP = ocpi.DateTime(2019, 6, 24, 12, 39, 9, tzinfo=UTC)


@pytest.mark.parametrize("patch_type", PATCH_TYPES)
def test_every_patch_requires_last_updated(patch_type: Any) -> None:
    with pytest.raises(InvalidPayload) as info:
        decode(b"{}", patch_type)
    assert info.value.message == "Object missing required field `last_updated`"


@pytest.mark.parametrize("patch_type", PATCH_TYPES)
def test_every_other_patch_field_is_optional_and_unset_by_default(patch_type: Any) -> None:
    patch = decode(b'{"last_updated": "2019-06-24T12:39:09Z"}', patch_type)
    fields = msgspec.structs.fields(patch_type)
    assert [field.name for field in fields if field.required] == ["last_updated"]
    assert all(getattr(patch, field.name) is msgspec.UNSET for field in fields if field.name != "last_updated")
    assert encode(patch) == b'{"last_updated":"2019-06-24T12:39:09Z"}'


@pytest.mark.parametrize(
    ("patch_type", "full_type"),
    [
        (ocpi.LocationPatch, ocpi.Location),
        (ocpi.EvsePatch, ocpi.EVSE),
        (ocpi.ConnectorPatch, ocpi.Connector),
        (ocpi.SessionPatch, ocpi.Session),
        (ocpi.TokenPatch, ocpi.Token),
    ],
)
def test_patch_covers_every_field_of_the_object(patch_type: Any, full_type: Any) -> None:
    assert patch_type.__struct_fields__ == full_type.__struct_fields__


def test_patch_validates_the_fields_it_carries() -> None:
    with pytest.raises(InvalidPayload, match=r"Invalid enum value 'BROKEN' - at `\$.status`"):
        decode(b'{"status": "BROKEN", "last_updated": "2019-06-24T12:39:09Z"}', ocpi.EvsePatch)
    with pytest.raises(InvalidPayload, match=r"at `\$.connectors`"):
        decode(b'{"connectors": [], "last_updated": "2019-06-24T12:39:09Z"}', ocpi.EvsePatch)


def test_explicit_null_on_an_optional_field_is_kept_apart_from_absent() -> None:
    patch = decode(b'{"name": null, "last_updated": "2019-06-24T12:39:09Z"}', ocpi.LocationPatch)
    assert patch.name is None
    assert patch.city is msgspec.UNSET
    assert encode(patch) == b'{"name":null,"last_updated":"2019-06-24T12:39:09Z"}'


def test_null_is_rejected_for_fields_the_object_requires() -> None:
    with pytest.raises(InvalidPayload, match=r"got `null` - at `\$.valid`"):
        decode(b'{"valid": null, "last_updated": "2019-06-19T02:11:11Z"}', ocpi.TokenPatch)


def test_session_patch_encodes_only_what_was_set() -> None:
    patch = ocpi.SessionPatch(
        kwh=Decimal("15.00"),
        total_cost=ocpi.Price(excl_vat=Decimal("0.80"), incl_vat=Decimal("0.88")),
        last_updated=STAMP,
    )
    assert encode(patch) == (
        b'{"kwh":15.00,"total_cost":{"excl_vat":0.80,"incl_vat":0.88},"last_updated":"2019-06-24T12:39:09Z"}'
    )
    assert decode(encode(patch), ocpi.SessionPatch) == patch


def test_tariffs_have_no_patch_body() -> None:
    # mod_tariffs §11.2: PATCH is n/a for tariffs.
    assert not hasattr(ocpi, "TariffPatch")
