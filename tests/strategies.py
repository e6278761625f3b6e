"""Hypothesis strategies for the OCPI 2.2.1 wire model.

Built by hand: ``st.from_type`` cannot see msgspec ``Meta`` constraints (lengths, patterns,
minimum list sizes), so it would produce values the decoder rightly rejects. Every strategy here
produces values that satisfy the constraints, so ``decode(encode(x)) == x`` must hold.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from hypothesis import strategies as st

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.types import DateTime

T = TypeVar("T")

_EPOCH = DateTime(1970, 1, 1, tzinfo=UTC)
# 1970-01-01 .. about 2200-01-01, in milliseconds: the wire keeps at most 3 fraction digits.
_MAX_MILLIS = 7_258_118_400_000

_printable_ascii = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
# Printable UTF-8: no control characters (Cc covers C0, DEL and C1) and no lone surrogates.
_printable_utf8 = st.characters(blacklist_categories=("Cc", "Cs"))


def ci_strings(max_size: int, *, min_size: int = 1) -> st.SearchStrategy[str]:
    """CiString(n): printable ASCII (types §16.1)."""
    return st.text(_printable_ascii, min_size=min_size, max_size=max_size)


def strings(max_size: int, *, min_size: int = 0) -> st.SearchStrategy[str]:
    """string(n): printable UTF-8, any script (types §16.7)."""
    return st.text(_printable_utf8, min_size=min_size, max_size=max_size)


def datetimes() -> st.SearchStrategy[DateTime]:
    """UTC DateTimes with millisecond precision, which is what survives the wire (types §16.2)."""
    return st.integers(min_value=0, max_value=_MAX_MILLIS).map(lambda ms: _EPOCH + timedelta(milliseconds=ms))


def decimals() -> st.SearchStrategy[Decimal]:
    """Finite decimals with up to 4 places (types §16.4), including exponent forms like 1E+3."""
    return st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False)


def optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.none() | strategy


def optional_list(strategy: st.SearchStrategy[T], max_size: int = 2) -> st.SearchStrategy[list[T] | None]:
    return st.none() | st.lists(strategy, max_size=max_size)


def open_enum(enum: type[StrEnum]) -> st.SearchStrategy[str]:
    """A known value, or an unknown one a partner may send: open fields must keep both."""
    return st.sampled_from(list(enum)) | st.text(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ_"), min_size=1, max_size=20
    )


ids = ci_strings(36)
country_codes = ci_strings(2, min_size=2)
party_ids = ci_strings(3, min_size=3)
urls = st.builds(
    lambda path: "https://example.com/" + path, st.text("abcdefghijklmnopqrstuvwxyz0123456789/", max_size=50)
)
latitudes = st.from_regex(r"\A-?[0-9]{1,2}\.[0-9]{5,7}\Z")
longitudes = st.from_regex(r"\A-?[0-9]{1,3}\.[0-9]{5,7}\Z")
hour_minutes = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
local_dates = st.builds(
    lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(1000, 2999), st.integers(1, 12), st.integers(1, 28)
)

display_texts = st.builds(ocpi.DisplayText, language=st.sampled_from(["en", "nl", "de", "fr"]), text=strings(512))
prices = st.builds(ocpi.Price, excl_vat=decimals(), incl_vat=optional(decimals()))

# --- versions and credentials -------------------------------------------------------------

versions = st.builds(ocpi.Version, version=open_enum(ocpi.VersionNumber), url=urls)
endpoints = st.builds(
    ocpi.Endpoint,
    identifier=open_enum(ocpi.ModuleID),
    role=st.sampled_from(ocpi.InterfaceRole),
    url=urls,
)
version_details = st.builds(
    ocpi.VersionDetails, version=open_enum(ocpi.VersionNumber), endpoints=st.lists(endpoints, min_size=1, max_size=4)
)

images = st.builds(
    ocpi.Image,
    url=urls,
    thumbnail=optional(urls),
    category=open_enum(ocpi.ImageCategory),
    type=st.sampled_from(["png", "jpeg", "gif", "svg"]),
    width=optional(st.integers(0, 99999)),
    height=optional(st.integers(0, 99999)),
)
business_details = st.builds(ocpi.BusinessDetails, name=strings(100), website=optional(urls), logo=optional(images))
credentials_roles = st.builds(
    ocpi.CredentialsRole,
    role=st.sampled_from(ocpi.Role),
    business_details=business_details,
    party_id=party_ids,
    country_code=country_codes,
)
credentials = st.builds(
    ocpi.Credentials,
    token=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64),
    url=urls,
    roles=st.lists(credentials_roles, min_size=1, max_size=3),
)

# --- locations ------------------------------------------------------------------------------

geo_locations = st.builds(ocpi.GeoLocation, latitude=latitudes, longitude=longitudes)
energy_mixes = st.builds(
    ocpi.EnergyMix,
    is_green_energy=st.booleans(),
    energy_sources=optional_list(
        st.builds(ocpi.EnergySource, source=open_enum(ocpi.EnergySourceCategory), percentage=decimals())
    ),
    environ_impact=optional_list(
        st.builds(ocpi.EnvironmentalImpact, category=open_enum(ocpi.EnvironmentalImpactCategory), amount=decimals())
    ),
    supplier_name=optional(strings(64)),
    energy_product_name=optional(strings(64)),
)
exceptional_periods = st.builds(ocpi.ExceptionalPeriod, period_begin=datetimes(), period_end=datetimes())
hours = st.builds(
    ocpi.Hours,
    twentyfourseven=st.booleans(),
    regular_hours=optional_list(
        st.builds(ocpi.RegularHours, weekday=st.integers(1, 7), period_begin=hour_minutes, period_end=hour_minutes)
    ),
    exceptional_openings=optional_list(exceptional_periods),
    exceptional_closings=optional_list(exceptional_periods),
)
connectors = st.builds(
    ocpi.Connector,
    id=ids,
    standard=open_enum(ocpi.ConnectorType),
    format=open_enum(ocpi.ConnectorFormat),
    power_type=open_enum(ocpi.PowerType),
    max_voltage=st.integers(0, 1500),
    max_amperage=st.integers(0, 1000),
    max_electric_power=optional(st.integers(0, 1_000_000)),
    tariff_ids=optional_list(ids),
    terms_and_conditions=optional(urls),
    last_updated=datetimes(),
)
evses = st.builds(
    ocpi.EVSE,
    uid=ids,
    evse_id=optional(ci_strings(48)),
    status=st.sampled_from(ocpi.Status),
    status_schedule=optional_list(
        st.builds(
            ocpi.StatusSchedule,
            period_begin=datetimes(),
            period_end=optional(datetimes()),
            status=st.sampled_from(ocpi.Status),
        )
    ),
    capabilities=optional_list(open_enum(ocpi.Capability)),
    connectors=st.lists(connectors, min_size=1, max_size=3),
    floor_level=optional(strings(4)),
    coordinates=optional(geo_locations),
    physical_reference=optional(strings(16)),
    directions=optional_list(display_texts),
    parking_restrictions=optional_list(open_enum(ocpi.ParkingRestriction)),
    images=optional_list(images, max_size=1),
    last_updated=datetimes(),
)
locations = st.builds(
    ocpi.Location,
    country_code=country_codes,
    party_id=party_ids,
    id=ids,
    publish=st.booleans(),
    publish_allowed_to=optional_list(
        st.builds(
            ocpi.PublishTokenType,
            uid=optional(ids),
            type=optional(st.sampled_from(ocpi.TokenType)),
            visual_number=optional(strings(64)),
            issuer=optional(strings(64)),
            group_id=optional(ids),
        )
    ),
    name=optional(strings(255)),
    address=strings(255),
    city=strings(45),
    postal_code=optional(strings(10)),
    state=optional(strings(45)),
    country=st.sampled_from(["NLD", "BEL", "DEU"]),
    coordinates=geo_locations,
    related_locations=optional_list(
        st.builds(ocpi.AdditionalGeoLocation, latitude=latitudes, longitude=longitudes, name=optional(display_texts))
    ),
    parking_type=optional(open_enum(ocpi.ParkingType)),
    evses=optional_list(evses, max_size=3),
    directions=optional_list(display_texts),
    operator=optional(business_details),
    suboperator=optional(business_details),
    owner=optional(business_details),
    facilities=optional_list(open_enum(ocpi.Facility)),
    time_zone=st.sampled_from(["Europe/Amsterdam", "Europe/Berlin", "UTC"]),
    opening_times=optional(hours),
    charging_when_closed=optional(st.booleans()),
    images=optional_list(images, max_size=1),
    energy_mix=optional(energy_mixes),
    last_updated=datetimes(),
)

# --- sessions and CDRs ----------------------------------------------------------------------

cdr_tokens = st.builds(
    ocpi.CdrToken,
    country_code=country_codes,
    party_id=party_ids,
    uid=ids,
    type=st.sampled_from(ocpi.TokenType),
    contract_id=ids,
)
charging_periods = st.builds(
    ocpi.ChargingPeriod,
    start_date_time=datetimes(),
    dimensions=st.lists(
        st.builds(ocpi.CdrDimension, type=st.sampled_from(ocpi.CdrDimensionType), volume=decimals()),
        min_size=1,
        max_size=3,
    ),
    tariff_id=optional(ids),
)
sessions = st.builds(
    ocpi.Session,
    country_code=country_codes,
    party_id=party_ids,
    id=ids,
    start_date_time=datetimes(),
    end_date_time=optional(datetimes()),
    kwh=decimals(),
    cdr_token=cdr_tokens,
    auth_method=st.sampled_from(ocpi.AuthMethod),
    authorization_reference=optional(ids),
    location_id=ids,
    evse_uid=ids,
    connector_id=ids,
    meter_id=optional(strings(255)),
    currency=st.sampled_from(["EUR", "GBP", "CHF"]),
    charging_periods=optional_list(charging_periods),
    total_cost=optional(prices),
    status=st.sampled_from(ocpi.SessionStatus),
    last_updated=datetimes(),
)

# --- tariffs --------------------------------------------------------------------------------

price_components = st.builds(
    ocpi.PriceComponent,
    type=st.sampled_from(ocpi.TariffDimensionType),
    price=decimals(),
    vat=optional(decimals()),
    step_size=st.integers(0, 3600),
)
tariff_restrictions = st.builds(
    ocpi.TariffRestrictions,
    start_time=optional(hour_minutes),
    end_time=optional(hour_minutes),
    start_date=optional(local_dates),
    end_date=optional(local_dates),
    min_kwh=optional(decimals()),
    max_kwh=optional(decimals()),
    min_current=optional(decimals()),
    max_current=optional(decimals()),
    min_power=optional(decimals()),
    max_power=optional(decimals()),
    min_duration=optional(st.integers(0, 86400)),
    max_duration=optional(st.integers(0, 86400)),
    day_of_week=optional_list(st.sampled_from(ocpi.DayOfWeek), max_size=7),
    reservation=optional(st.sampled_from(ocpi.ReservationRestrictionType)),
)
tariffs = st.builds(
    ocpi.Tariff,
    country_code=country_codes,
    party_id=party_ids,
    id=ids,
    currency=st.sampled_from(["EUR", "GBP", "CHF"]),
    type=optional(open_enum(ocpi.TariffType)),
    tariff_alt_text=optional_list(display_texts),
    tariff_alt_url=optional(urls),
    min_price=optional(prices),
    max_price=optional(prices),
    elements=st.lists(
        st.builds(
            ocpi.TariffElement,
            price_components=st.lists(price_components, min_size=1, max_size=3),
            restrictions=optional(tariff_restrictions),
        ),
        min_size=1,
        max_size=3,
    ),
    start_date_time=optional(datetimes()),
    end_date_time=optional(datetimes()),
    energy_mix=optional(energy_mixes),
    last_updated=datetimes(),
)

cdr_locations = st.builds(
    ocpi.CdrLocation,
    id=ids,
    name=optional(strings(255)),
    address=strings(45),
    city=strings(45),
    postal_code=optional(strings(10)),
    state=optional(strings(20)),
    country=st.sampled_from(["NLD", "BEL", "DEU"]),
    coordinates=geo_locations,
    evse_uid=ids,
    evse_id=ci_strings(48),
    connector_id=ids,
    connector_standard=open_enum(ocpi.ConnectorType),
    connector_format=open_enum(ocpi.ConnectorFormat),
    connector_power_type=open_enum(ocpi.PowerType),
)
signed_data = st.builds(
    ocpi.SignedData,
    encoding_method=ids,
    encoding_method_version=optional(st.integers(0, 100)),
    public_key=optional(strings(512)),
    signed_values=st.lists(
        st.builds(ocpi.SignedValue, nature=ci_strings(32), plain_data=strings(200), signed_data=strings(200)),
        min_size=1,
        max_size=2,
    ),
    url=optional(strings(512)),
)
cdrs = st.builds(
    ocpi.CDR,
    country_code=country_codes,
    party_id=party_ids,
    id=ci_strings(39),
    start_date_time=datetimes(),
    end_date_time=datetimes(),
    session_id=optional(ids),
    cdr_token=cdr_tokens,
    auth_method=st.sampled_from(ocpi.AuthMethod),
    authorization_reference=optional(ids),
    cdr_location=cdr_locations,
    meter_id=optional(strings(255)),
    currency=st.sampled_from(["EUR", "GBP", "CHF"]),
    tariffs=optional_list(tariffs, max_size=1),
    charging_periods=st.lists(charging_periods, min_size=1, max_size=3),
    signed_data=optional(signed_data),
    total_cost=prices,
    total_fixed_cost=optional(prices),
    total_energy=decimals(),
    total_energy_cost=optional(prices),
    total_time=decimals(),
    total_time_cost=optional(prices),
    total_parking_time=optional(decimals()),
    total_parking_cost=optional(prices),
    total_reservation_cost=optional(prices),
    remark=optional(strings(255)),
    invoice_reference_id=optional(ci_strings(39)),
    credit=optional(st.booleans()),
    credit_reference_id=optional(ci_strings(39)),
    home_charging_compensation=optional(st.booleans()),
    last_updated=datetimes(),
)

# --- tokens, hub client info, commands --------------------------------------------------------

tokens = st.builds(
    ocpi.Token,
    country_code=country_codes,
    party_id=party_ids,
    uid=ids,
    type=st.sampled_from(ocpi.TokenType),
    contract_id=ids,
    visual_number=optional(strings(64)),
    issuer=strings(64),
    group_id=optional(ids),
    valid=st.booleans(),
    whitelist=st.sampled_from(ocpi.WhitelistType),
    language=optional(st.sampled_from(["en", "nl", "de"])),
    default_profile_type=optional(open_enum(ocpi.ProfileType)),
    energy_contract=optional(
        st.builds(ocpi.EnergyContract, supplier_name=strings(64), contract_id=optional(strings(64)))
    ),
    last_updated=datetimes(),
)
client_infos = st.builds(
    ocpi.ClientInfo,
    party_id=party_ids,
    country_code=country_codes,
    role=st.sampled_from(ocpi.Role),
    status=st.sampled_from(ocpi.ConnectionStatus),
    last_updated=datetimes(),
)
command_results = st.builds(
    ocpi.CommandResult,
    result=st.sampled_from(ocpi.CommandResultType),
    message=optional_list(display_texts),
)
