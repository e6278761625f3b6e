"""Property: every generated wire object survives encode → decode unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import decode, encode
from hub.ocpi.envelope import OcpiResponse, envelope_bytes
from hub.ocpi.types import format_datetime
from tests import strategies

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CASES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (ocpi.Credentials, strategies.credentials),
    (ocpi.Version, strategies.versions),
    (ocpi.VersionDetails, strategies.version_details),
    (ocpi.Location, strategies.locations),
    (ocpi.Session, strategies.sessions),
    (ocpi.CDR, strategies.cdrs),
    (ocpi.Tariff, strategies.tariffs),
    (ocpi.Token, strategies.tokens),
    (ocpi.ClientInfo, strategies.client_infos),
    (ocpi.CommandResult, strategies.command_results),
]


@pytest.mark.parametrize(("type_", "strategy"), CASES, ids=[case[0].__name__ for case in CASES])
def test_encode_decode_round_trip(type_: Any, strategy: st.SearchStrategy[Any]) -> None:
    @PROPERTY_SETTINGS
    @given(strategy)
    def check(value: Any) -> None:
        encoded = encode(value)
        decoded = decode(encoded, type_)
        assert decoded == value
        assert encode(decoded) == encoded

    check()


@PROPERTY_SETTINGS
@given(st.lists(strategies.tokens, max_size=3), strategies.datetimes())
def test_envelope_round_trip_with_raw_data(tokens: list[ocpi.Token], stamp: ocpi.DateTime) -> None:
    body = envelope_bytes(1000, data_json=encode(tokens), message="Success", timestamp=stamp)
    envelope = decode(body, OcpiResponse[list[ocpi.Token]])
    assert envelope.data == tokens
    assert envelope.timestamp == stamp


@PROPERTY_SETTINGS
@given(strategies.datetimes())
def test_datetime_text_is_short_utc_and_parses_back(value: ocpi.DateTime) -> None:
    text = format_datetime(value)
    assert len(text) <= 25
    assert text.endswith("Z")
    assert decode(encode(text), ocpi.DateTime) == value
