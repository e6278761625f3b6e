"""Module-specific rules: open enums, bugfix-branch length limits, coordinate and time patterns."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import InvalidPayload, decode, encode


def _with(base: dict[str, Any], **changes: Any) -> bytes:
    return msgspec.json.encode({**base, **changes})


LOCATION: dict[str, Any] = {
    "country_code": "NL",
    "party_id": "TNM",
    "id": "LOC1",
    "publish": True,
    "address": "Street 1",
    "city": "Town",
    "country": "NLD",
    "coordinates": {"latitude": "51.047599", "longitude": "3.729944"},
    "time_zone": "Europe/Amsterdam",
    "last_updated": "2024-01-01T00:00:00Z",
}
CDR_LOCATION: dict[str, Any] = {
    "id": "LOC1",
    "address": "Street 1",
    "city": "Town",
    "country": "NLD",
    "coordinates": {"latitude": "51.047599", "longitude": "3.729944"},
    "evse_uid": "E1",
    "evse_id": "NL*TNM*E1",
    "connector_id": "1",
    "connector_standard": "IEC_62196_T2",
    "connector_format": "SOCKET",
    "connector_power_type": "AC_3_PHASE",
}


def test_versions_accept_deprecated_and_newer_version_numbers() -> None:
    payload = b'[{"version": "2.2", "url": "https://x/2.2"}, {"version": "2.3.0", "url": "https://x/2.3.0"}]'
    versions = decode(payload, list[ocpi.Version])
    assert [v.version for v in versions] == [ocpi.VersionNumber.V2_2, "2.3.0"]
    assert {str(v) for v in ocpi.VersionNumber} == {"2.0", "2.1", "2.1.1", "2.2", "2.2.1"}


def test_endpoint_identifier_accepts_custom_modules() -> None:
    endpoint = decode(b'{"identifier": "nltnm-tokens", "role": "SENDER", "url": "https://x/t"}', ocpi.Endpoint)
    assert endpoint.identifier == "nltnm-tokens"
    standard = decode(b'{"identifier": "hubclientinfo", "role": "RECEIVER", "url": "https://x/h"}', ocpi.Endpoint)
    assert standard.identifier == ocpi.ModuleID.HUB_CLIENT_INFO
    assert standard.role is ocpi.InterfaceRole.RECEIVER
    assert len(ocpi.ModuleID) == 9


def test_location_uses_the_bugfix_branch_lengths() -> None:
    location = decode(_with(LOCATION, address="a" * 255, state="s" * 45), ocpi.Location)
    assert len(location.address) == 255
    with pytest.raises(InvalidPayload, match=r"length <= 255 - at `\$.address`"):
        decode(_with(LOCATION, address="a" * 256), ocpi.Location)
    with pytest.raises(InvalidPayload, match=r"length <= 45 - at `\$.state`"):
        decode(_with(LOCATION, state="s" * 46), ocpi.Location)


def test_cdr_location_keeps_the_short_lengths() -> None:
    assert decode(_with(CDR_LOCATION, address="a" * 45, state="s" * 20), ocpi.CdrLocation).state == "s" * 20
    with pytest.raises(InvalidPayload, match=r"length <= 45 - at `\$.address`"):
        decode(_with(CDR_LOCATION, address="a" * 46), ocpi.CdrLocation)
    with pytest.raises(InvalidPayload, match=r"length <= 20 - at `\$.state`"):
        decode(_with(CDR_LOCATION, state="s" * 21), ocpi.CdrLocation)


def test_signed_value_plain_data_allows_5000_characters() -> None:
    value = {"nature": "Start", "plain_data": "p" * 5000, "signed_data": "s"}
    assert len(decode(msgspec.json.encode(value), ocpi.SignedValue).plain_data) == 5000
    with pytest.raises(InvalidPayload, match=r"length <= 5000 - at `\$.plain_data`"):
        decode(msgspec.json.encode({**value, "plain_data": "p" * 5001}), ocpi.SignedValue)


@pytest.mark.parametrize(
    ("latitude", "longitude"), [("51.04759", "3.72994"), ("-33.8688197", "-151.2092955"), ("0.1234567", "179.00000")]
)
def test_coordinates_matching_the_spec_regex_are_accepted(latitude: str, longitude: str) -> None:
    geo = decode(msgspec.json.encode({"latitude": latitude, "longitude": longitude}), ocpi.GeoLocation)
    assert (geo.latitude, geo.longitude) == (latitude, longitude)


@pytest.mark.parametrize(
    ("latitude", "longitude", "field"),
    [
        ("51.0475", "3.729944", "latitude"),  # too few decimals
        ("51,047599", "3.729944", "latitude"),  # comma separator
        ("123.047599", "3.729944", "latitude"),  # three integer digits
        ("51.047599", "3.72994412", "longitude"),  # eight decimals
        ("51.047599", " 3.729944", "longitude"),  # padding
    ],
)
def test_coordinates_outside_the_spec_regex_are_rejected(latitude: str, longitude: str, field: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        decode(msgspec.json.encode({"latitude": latitude, "longitude": longitude}), ocpi.GeoLocation)
    assert info.value.message.endswith(f"- at `$.{field}`")


def test_coordinates_are_strings_not_numbers() -> None:
    with pytest.raises(InvalidPayload, match=r"Expected `str`, got `float` - at `\$.latitude`"):
        decode(b'{"latitude": 51.047599, "longitude": "3.729944"}', ocpi.GeoLocation)


@pytest.mark.parametrize(("begin", "ok"), [("00:00", True), ("23:59", True), ("24:00", False), ("8:00", False)])
def test_regular_hours_time_format(begin: str, ok: bool) -> None:
    payload = msgspec.json.encode({"weekday": 1, "period_begin": begin, "period_end": "23:59"})
    if ok:
        assert decode(payload, ocpi.RegularHours).period_begin == begin
    else:
        with pytest.raises(InvalidPayload, match=r"at `\$.period_begin`"):
            decode(payload, ocpi.RegularHours)


@pytest.mark.parametrize("weekday", [0, 8])
def test_regular_hours_weekday_range(weekday: int) -> None:
    payload = msgspec.json.encode({"weekday": weekday, "period_begin": "08:00", "period_end": "20:00"})
    with pytest.raises(InvalidPayload, match=r"at `\$.weekday`"):
        decode(payload, ocpi.RegularHours)


@pytest.mark.parametrize(("date", "ok"), [("2015-12-24", True), ("2015-13-01", False), ("15-12-24", False)])
def test_tariff_restriction_dates(date: str, ok: bool) -> None:
    payload = msgspec.json.encode({"start_date": date})
    if ok:
        assert decode(payload, ocpi.TariffRestrictions).start_date == date
    else:
        with pytest.raises(InvalidPayload, match=r"at `\$.start_date`"):
            decode(payload, ocpi.TariffRestrictions)


def test_evse_needs_a_connector_and_cdr_a_charging_period() -> None:
    evse = {"uid": "E1", "status": "AVAILABLE", "connectors": [], "last_updated": "2024-01-01T00:00:00Z"}
    with pytest.raises(InvalidPayload, match=r"length >= 1 - at `\$.connectors`"):
        decode(msgspec.json.encode(evse), ocpi.EVSE)


def test_relayed_enums_are_open_and_acted_on_enums_are_strict() -> None:
    connector = {
        "id": "1",
        "standard": "NACS",  # not a 2.2.1 ConnectorType: relayed untouched
        "format": "CABLE",
        "power_type": "DC",
        "max_voltage": 920,
        "max_amperage": 400,
        "last_updated": "2024-01-01T00:00:00Z",
    }
    decoded = decode(msgspec.json.encode(connector), ocpi.Connector)
    assert decoded.standard == "NACS"
    assert decoded.format == ocpi.ConnectorFormat.CABLE
    assert b'"standard":"NACS"' in encode(decoded)
    with pytest.raises(InvalidPayload, match=r"Invalid enum value 'PLUGGED' - at `\$.status`"):
        decode(
            b'{"uid": "E1", "status": "PLUGGED", "connectors": [], "last_updated": "2024-01-01T00:00:00Z"}', ocpi.EVSE
        )


def test_every_public_name_is_re_exported() -> None:
    from hub.ocpi.v2_2_1 import (  # noqa: PLC0415 - the imports are what is under test
        cdrs,
        chargingprofiles,
        commands,
        credentials,
        hubclientinfo,
        locations,
        sessions,
        tariffs,
        tokens,
        versions,
    )

    modules = [
        cdrs,
        chargingprofiles,
        commands,
        credentials,
        hubclientinfo,
        locations,
        sessions,
        tariffs,
        tokens,
        versions,
    ]
    for module in modules:
        for name in module.__all__:
            assert getattr(ocpi, name) is getattr(module, name), f"{module.__name__}.{name}"
    # Shared classes are defined once and reused, not redefined per module.
    assert vars(locations)["BusinessDetails"] is credentials.BusinessDetails
    assert vars(locations)["TokenType"] is tokens.TokenType is vars(cdrs)["TokenType"]
    assert vars(cdrs)["GeoLocation"] is locations.GeoLocation


def test_command_and_charging_profile_objects_decode() -> None:
    token = {
        "country_code": "DE",
        "party_id": "ABC",
        "uid": "012345678",
        "type": "RFID",
        "contract_id": "DE8ACC12E46L89",
        "issuer": "TheNewMotion",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2018-12-10T17:25:10Z",
    }
    start = decode(
        msgspec.json.encode({"response_url": "https://x/r/1", "token": token, "location_id": "LOC1"}),
        ocpi.StartSession,
    )
    assert start.token.type is ocpi.TokenType.RFID
    assert start.evse_uid is None
    response = decode(b'{"result": "ACCEPTED", "timeout": 30}', ocpi.CommandResponse)
    assert response.result is ocpi.CommandResponseType.ACCEPTED
    profile = decode(
        b'{"charging_profile": {"charging_rate_unit": "W", "charging_profile_period":'
        b' [{"start_period": 0, "limit": 11000.5}]}, "response_url": "https://x/r/2"}',
        ocpi.SetChargingProfile,
    )
    periods = profile.charging_profile.charging_profile_period
    assert periods is not None
    assert str(periods[0].limit) == "11000.5"
