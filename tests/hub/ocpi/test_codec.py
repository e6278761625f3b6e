"""The codec: JSON vs payload errors with field paths, str and bytes input, Decimal/DateTime encoding."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

import pytest

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import InvalidJson, InvalidPayload, WireError, decode, encode, has_nul

ROLE = b'{"role": "CPO", "business_details": {"name": "Example"}, "party_id": "EXA", "country_code": "NL"}'


def _credentials(roles: bytes) -> bytes:
    return b'{"token": "abc", "url": "https://example.com/versions", "roles": ' + roles + b"}"


def test_decodes_bytes_and_str_alike() -> None:
    as_bytes = decode(_credentials(b"[" + ROLE + b"]"), ocpi.Credentials)
    as_str = decode(_credentials(b"[" + ROLE + b"]").decode(), ocpi.Credentials)
    assert as_bytes == as_str
    assert as_bytes.roles[0].role is ocpi.Role.CPO


@pytest.mark.parametrize("payload", [b"", b"{", b"not json", b'{"token": "abc",}', b"\xff\xfe"])
def test_invalid_json_raises_invalid_json(payload: bytes) -> None:
    with pytest.raises(InvalidJson) as info:
        decode(payload, ocpi.Credentials)
    assert isinstance(info.value, WireError)
    assert not isinstance(info.value, InvalidPayload)
    assert info.value.message


def test_invalid_payload_names_the_field_path() -> None:
    bad_role = ROLE.replace(b'"CPO"', b'"DRIVER"')
    with pytest.raises(InvalidPayload) as info:
        decode(_credentials(b"[" + ROLE + b", " + bad_role + b"]"), ocpi.Credentials)
    assert info.value.message == "Invalid enum value 'DRIVER' - at `$.roles[1].role`"
    assert str(info.value) == info.value.message


def test_trailing_garbage_is_invalid_json() -> None:
    with pytest.raises(InvalidJson, match="trailing characters"):
        decode(b"[1] trailing", list[int])


def test_missing_field_names_the_field() -> None:
    with pytest.raises(InvalidPayload) as info:
        decode(b'{"token": "abc", "roles": [' + ROLE + b"]}", ocpi.Credentials)
    assert info.value.message == "Object missing required field `url`"


@pytest.mark.parametrize(
    ("token", "needle"),
    [("", "length >= 1"), ("a" * 65, "length <= 64"), ("has space", "matching regex"), ("tab\t", "matching regex")],
)
def test_credentials_token_constraints(token: str, needle: str) -> None:
    payload = _credentials(b"[" + ROLE + b"]").replace(b'"abc"', encode(token))
    with pytest.raises(InvalidPayload) as info:
        decode(payload, ocpi.Credentials)
    assert needle in info.value.message
    assert info.value.message.endswith("- at `$.token`")


def test_credentials_need_at_least_one_role() -> None:
    with pytest.raises(InvalidPayload, match=r"length >= 1 - at `\$.roles`"):
        decode(_credentials(b"[]"), ocpi.Credentials)


def test_wrong_top_level_type_is_a_payload_error() -> None:
    with pytest.raises(InvalidPayload, match="Expected `object`, got `array`"):
        decode(b"[]", ocpi.Credentials)


def test_decoders_work_for_parametrised_containers() -> None:
    versions = decode(b'[{"version": "2.2.1", "url": "https://x/2.2.1"}]', list[ocpi.Version])
    assert versions == [ocpi.Version(version="2.2.1", url="https://x/2.2.1")]
    # The cached decoder for the same type is reused and still validates.
    with pytest.raises(InvalidPayload, match=r"at `\$\[0\]`"):
        decode(b'[{"version": "2.2.1"}]', list[ocpi.Version])


def test_encode_handles_decimals_datetimes_and_enums() -> None:
    session_price = ocpi.Price(excl_vat=Decimal("1.50"), incl_vat=Decimal("1.815"))
    stamp = ocpi.DateTime(2024, 5, 6, 7, 8, 9, 10_000, tzinfo=UTC)
    info = ocpi.ClientInfo(
        party_id="EXA", country_code="NL", role=ocpi.Role.EMSP, status=ocpi.ConnectionStatus.OFFLINE, last_updated=stamp
    )
    assert encode(session_price) == b'{"excl_vat":1.50,"incl_vat":1.815}'
    assert encode(info) == (
        b'{"party_id":"EXA","country_code":"NL","role":"EMSP","status":"OFFLINE",'
        b'"last_updated":"2024-05-06T07:08:09.010Z"}'
    )


@pytest.mark.parametrize(
    ("payload", "nul"),
    [
        (b'{"a": "x\\u0000y"}', True),
        (b'{"x\\u0000": 1}', True),  # in a key
        (b'[[["\\u0000"]]]', True),
        (b'{"a": "C:\\\\u0000"}', False),  # an escaped backslash, then the text u0000
        (b'{"a": "\\u00001"}', True),
        (b'{"a": "\\u0001"}', False),
    ],
)
def test_has_nul_finds_u0000_in_any_string(payload: bytes, nul: bool) -> None:
    assert has_nul(payload) is nul


def test_decode_refuses_u0000_in_a_field_without_a_pattern() -> None:
    with pytest.raises(InvalidPayload, match="U\\+0000"):
        decode(b'{"a": "http://x/\\u0000"}', dict[str, str])
    assert decode(b'{"a": "C:\\\\u0000"}', dict[str, str]) == {"a": "C:\\u0000"}
