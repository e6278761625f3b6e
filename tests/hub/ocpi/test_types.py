"""Shared wire types: DateTime (types §16.2), CiString keys (§16.1), Decimal numbers (§16.4), tolerance rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import InvalidPayload, decode, encode
from hub.ocpi.types import (
    CiString3,
    DateTime,
    OcpiStruct,
    OpenEnum,
    String4,
    ci_key,
    format_datetime,
    parse_datetime,
)


class Stamped(OcpiStruct):
    at: DateTime


class Named(OcpiStruct):
    code: CiString3
    label: String4 | None = None


class Tagged(OcpiStruct):
    kind: OpenEnum


def _at(text: str) -> DateTime:
    return decode(b'{"at": "' + text.encode() + b'"}', Stamped).at


# --- DateTime ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2015-06-29T20:39:09Z", "2015-06-29T20:39:09"])
def test_datetime_with_and_without_z_is_utc(text: str) -> None:
    value = _at(text)
    assert isinstance(value, DateTime)
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)
    assert value == datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fraction", "micros"),
    [
        ("2", 200_000),
        ("12", 120_000),
        ("123", 123_000),
        ("1234", 123_400),
        ("12345", 123_450),
        ("123456", 123_456),
        ("1234567", 123_456),
        ("12345678", 123_456),
        ("123456789", 123_456),
    ],
)
@pytest.mark.parametrize("zone", ["Z", ""])
def test_datetime_fractions_of_any_length(fraction: str, micros: int, zone: str) -> None:
    value = _at(f"2016-12-29T17:45:09.{fraction}{zone}")
    assert value == datetime(2016, 12, 29, 17, 45, 9, micros, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2015-06-29T20:39:09+00:00",
        "2015-06-29T20:39:09+01:00",
        "2015-06-29T20:39:09.123-05:00",
        "2015-06-29T20:39:09+0100",
    ],
)
def test_datetime_offsets_are_rejected_with_a_precise_message(text: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        _at(text)
    assert "UTC offsets are not allowed" in info.value.message
    assert text in info.value.message
    assert info.value.message.endswith("- at `$.at`")


@pytest.mark.parametrize(
    "text",
    ["2015-06-29 20:39:09Z", "2015-06-29", "2015-06-29T20:39Z", "2015-13-29T20:39:09Z", "2015-06-29T20:39:09.Z", "z"],
)
def test_datetime_malformed_values_are_rejected(text: str) -> None:
    with pytest.raises(InvalidPayload, match=r"Invalid OCPI DateTime"):
        _at(text)


def test_datetime_must_be_a_json_string() -> None:
    with pytest.raises(InvalidPayload, match=r"got `int` - at `\$.at`"):
        decode(b'{"at": 1435610349}', Stamped)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DateTime(2015, 6, 29, 20, 39, 9, tzinfo=UTC), "2015-06-29T20:39:09Z"),
        (DateTime(2016, 12, 29, 17, 45, 9, 200_000, tzinfo=UTC), "2016-12-29T17:45:09.200Z"),
        (DateTime(2018, 1, 1, 1, 8, 1, 123_999, tzinfo=UTC), "2018-01-01T01:08:01.123Z"),
        (DateTime(2018, 1, 1, 1, 8, 1, 999, tzinfo=UTC), "2018-01-01T01:08:01Z"),
        (DateTime(2018, 1, 1, 2, 8, 1, tzinfo=timezone(timedelta(hours=1))), "2018-01-01T01:08:01Z"),
    ],
)
def test_datetime_encodes_as_utc_z_with_at_most_three_fraction_digits(value: DateTime, expected: str) -> None:
    encoded = encode(Stamped(at=value))
    assert encoded == b'{"at":"' + expected.encode() + b'"}'
    assert len(expected) <= 25


def test_datetime_encoding_never_exceeds_25_characters() -> None:
    widest = DateTime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    text = format_datetime(widest)
    assert text == "9999-12-31T23:59:59.999Z"
    assert len(text) <= 25


def test_naive_datetimes_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_datetime(datetime(2020, 1, 1))  # noqa: DTZ001 - the naive value is the point of the test
    with pytest.raises(ValueError, match="timezone-aware"):
        DateTime.from_datetime(datetime(2020, 1, 1))  # noqa: DTZ001


def test_from_datetime_converts_to_utc() -> None:
    local = datetime(2020, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    value = DateTime.from_datetime(local)
    assert isinstance(value, DateTime)
    assert value.tzinfo is UTC
    assert (value.hour, value == local) == (10, True)


def test_parse_and_format_are_inverse_for_millisecond_values() -> None:
    text = "2024-02-29T23:59:59.001Z"
    assert format_datetime(parse_datetime(text)) == text


# --- CiString / string ----------------------------------------------------------------------


def test_ci_key_folds_ascii_case_only() -> None:
    assert ci_key("nl") == ci_key("NL") == "NL"
    assert ci_key("tNm-1a") == "TNM-1A"
    assert ci_key("a b~") == "A B~"
    # Non-ASCII never reaches a CiString field, but the key must not change length if it did.
    assert ci_key("straße") == "STRAßE"


def test_ci_strings_keep_their_original_case_on_the_wire() -> None:
    value = decode(b'{"code": "tNm"}', Named)
    assert value.code == "tNm"
    assert encode(value) == b'{"code":"tNm"}'
    assert ci_key(value.code) == ci_key("TNM")


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b'{"code": "ABCD"}', "length <= 3 - at `$.code`"),
        (b'{"code": "\\u00e9"}', "- at `$.code`"),
        (b'{"code": "A\\tB"}', "- at `$.code`"),
        (b'{"code": "AB", "label": "a\\nb"}', "- at `$.label`"),
        (b'{"code": "AB", "label": "12345"}', "length <= 4 - at `$.label`"),
    ],
)
def test_string_constraints_are_enforced(payload: bytes, needle: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        decode(payload, Named)
    assert needle in info.value.message


def test_string_accepts_printable_unicode() -> None:
    assert decode('{"code": "AB", "label": "Käse"}', Named).label == "Käse"


# --- numbers --------------------------------------------------------------------------------


def test_money_decodes_to_exact_decimal_and_encodes_as_json_number() -> None:
    price = decode(b'{"excl_vat": 0.30, "incl_vat": 0.1000000000000000055511151231257827}', ocpi.Price)
    assert isinstance(price.excl_vat, Decimal)
    assert price.excl_vat == Decimal("0.30")
    assert str(price.excl_vat) == "0.30"
    assert price.incl_vat == Decimal("0.1000000000000000055511151231257827")
    assert encode(price) == b'{"excl_vat":0.30,"incl_vat":0.1000000000000000055511151231257827}'


def test_decimal_sums_stay_exact() -> None:
    a = decode(b'{"excl_vat": 0.1}', ocpi.Price).excl_vat
    b = decode(b'{"excl_vat": 0.2}', ocpi.Price).excl_vat
    total = ocpi.Price(excl_vat=a + b)
    assert total.excl_vat == Decimal("0.3")
    assert encode(total) == b'{"excl_vat":0.3}'


def test_integer_amounts_decode_to_decimal() -> None:
    volume = decode(b'{"type": "ENERGY", "volume": 2200}', ocpi.CdrDimension).volume
    assert isinstance(volume, Decimal)
    assert volume == Decimal(2200)


# --- tolerance ------------------------------------------------------------------------------


def test_null_optional_fields_are_treated_as_absent() -> None:
    with_null = decode(b'{"excl_vat": 1, "incl_vat": null}', ocpi.Price)
    absent = decode(b'{"excl_vat": 1}', ocpi.Price)
    assert with_null == absent
    assert with_null.incl_vat is None
    assert encode(with_null) == b'{"excl_vat":1}'


def test_null_optional_lists_are_treated_as_absent() -> None:
    hours = decode(b'{"twentyfourseven": true, "regular_hours": null}', ocpi.Hours)
    assert hours.regular_hours is None
    assert encode(hours) == b'{"twentyfourseven":true}'


def test_unknown_fields_are_ignored_on_decode() -> None:
    payload = b'{"language": "en", "text": "Hi", "x_custom": {"nested": [1, 2]}, "extra": null}'
    assert decode(payload, ocpi.DisplayText) == ocpi.DisplayText(language="en", text="Hi")


def test_open_enums_keep_unknown_values() -> None:
    value = decode(b'{"kind": "FUTURE_VALUE"}', Tagged)
    assert value.kind == "FUTURE_VALUE"
    assert encode(value) == b'{"kind":"FUTURE_VALUE"}'
    with pytest.raises(InvalidPayload, match=r"length >= 1 - at `\$.kind`"):
        decode(b'{"kind": ""}', Tagged)


def test_strict_enums_reject_unknown_values() -> None:
    with pytest.raises(InvalidPayload, match=r"Invalid enum value 'PTP' - at `\$.role`"):
        decode(
            b'{"party_id": "ABC", "country_code": "NL", "role": "PTP", "status": "CONNECTED",'
            b' "last_updated": "2020-01-01T00:00:00Z"}',
            ocpi.ClientInfo,
        )


def test_structs_are_frozen_and_keyword_only() -> None:
    price = ocpi.Price(excl_vat=Decimal(1))
    with pytest.raises(AttributeError):
        price.excl_vat = Decimal(2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        ocpi.Price(Decimal(1))  # type: ignore[call-arg]
