"""Response envelope (transport §4.1.7), status codes (status_codes §5) and raw pass-through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import InvalidPayload, decode, encode
from hub.ocpi.envelope import NO_DATA, OcpiRawResponse, OcpiResponse, OcpiStatus, OcpiStatusView, envelope_bytes

NOW = datetime(2024, 1, 2, 3, 4, 5, 678_900, tzinfo=UTC)


def test_status_codes_have_the_spec_values() -> None:
    assert {member.name: int(member) for member in OcpiStatus} == {
        "SUCCESS": 1000,
        "CLIENT_ERROR": 2000,
        "INVALID_OR_MISSING_PARAMETERS": 2001,
        "NOT_ENOUGH_INFORMATION": 2002,
        "UNKNOWN_LOCATION": 2003,
        "UNKNOWN_TOKEN": 2004,
        "SERVER_ERROR": 3000,
        "UNABLE_TO_USE_CLIENT_API": 3001,
        "UNSUPPORTED_VERSION": 3002,
        "NO_MATCHING_ENDPOINTS": 3003,
        "HUB_ERROR": 4000,
        "UNKNOWN_RECEIVER": 4001,
        "TIMEOUT_ON_FORWARDED_REQUEST": 4002,
        "CONNECTION_PROBLEM": 4003,
    }


@pytest.mark.parametrize(
    "data_json",
    [
        b'[ {"a" :1.50,  "custom_field": "\\u00e9"} ]',
        b'{"x": 1e3, "y": 0.30000000000000004}',
        b'"a string"',
        b"null",
    ],
)
def test_envelope_bytes_wraps_data_byte_for_byte(data_json: bytes) -> None:
    body = envelope_bytes(OcpiStatus.SUCCESS, data_json=data_json, message="Success", timestamp=NOW)
    assert body == (
        b'{"data":' + data_json + b',"status_code":1000,"status_message":"Success",'
        b'"timestamp":"2024-01-02T03:04:05.678Z"}'
    )
    raw = decode(body, OcpiRawResponse)
    assert bytes(raw.data) == data_json
    assert raw.status_code == 1000


def test_envelope_bytes_without_data_or_message() -> None:
    body = envelope_bytes(4001, timestamp=NOW)
    assert body == b'{"status_code":4001,"timestamp":"2024-01-02T03:04:05.678Z"}'
    envelope = decode(body, OcpiResponse[ocpi.Token])
    assert envelope.data is None
    assert envelope.status_code == OcpiStatus.UNKNOWN_RECEIVER
    assert envelope.status_message is None


def test_envelope_bytes_escapes_the_message_and_converts_the_timestamp() -> None:
    body = envelope_bytes(
        2001, message='bad "id"\nline', timestamp=datetime(2024, 1, 2, 5, 0, tzinfo=timezone(timedelta(hours=2)))
    )
    assert body == b'{"status_code":2001,"status_message":"bad \\"id\\"\\nline","timestamp":"2024-01-02T03:00:00Z"}'
    assert decode(body, OcpiStatusView).status_message == 'bad "id"\nline'


def test_envelope_bytes_matches_the_typed_encoding() -> None:
    version = ocpi.Version(version=ocpi.VersionNumber.V2_2_1, url="https://hub.example.com/2.2.1")
    typed = OcpiResponse[list[ocpi.Version]](
        data=[version], status_code=1000, status_message="ok", timestamp=ocpi.DateTime.from_datetime(NOW)
    )
    assert envelope_bytes(1000, data_json=encode([version]), message="ok", timestamp=NOW) == encode(typed)


def test_typed_envelope_validates_data() -> None:
    body = envelope_bytes(1000, data_json=b'[{"version": "2.2.1"}]', timestamp=NOW)
    with pytest.raises(InvalidPayload) as info:
        decode(body, OcpiResponse[list[ocpi.Version]])
    assert info.value.message == "Object missing required field `url` - at `$.data[0]`"


def test_envelope_timestamp_is_required_and_must_be_an_ocpi_datetime() -> None:
    with pytest.raises(InvalidPayload, match="missing required field `timestamp`"):
        decode(b'{"status_code": 1000}', OcpiResponse[ocpi.Token])
    with pytest.raises(InvalidPayload, match=r"offsets are not allowed.* - at `\$.timestamp`"):
        decode(b'{"status_code": 1000, "timestamp": "2024-01-01T00:00:00+00:00"}', OcpiResponse[ocpi.Token])


def test_status_view_reads_the_outcome_without_decoding_data() -> None:
    # data is nonsense for every wire type, yet the view only looks at the status fields.
    body = b'{"data": {"anything": [1, {"deep": true}]}, "status_code": 2004, "status_message": "Unknown token"}'
    view = decode(body, OcpiStatusView)
    assert view == OcpiStatusView(status_code=2004, status_message="Unknown token")


def test_raw_response_keeps_absent_data_distinguishable() -> None:
    raw = decode(b'{"status_code": 1000, "timestamp": "2024-01-01T00:00:00Z"}', OcpiRawResponse)
    assert raw.data is NO_DATA
    assert encode(raw) == b'{"status_code":1000,"timestamp":"2024-01-01T00:00:00Z"}'
    forwarded = decode(b'{"data": {"k" : 1}, "status_code": 1000}', OcpiRawResponse)
    assert isinstance(forwarded.data, msgspec.Raw)
    assert bytes(forwarded.data) == b'{"k" : 1}'
    assert forwarded.timestamp is None
