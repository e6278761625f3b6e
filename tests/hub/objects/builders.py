"""Small builders of OCPI objects as JSON bytes, and the specification's examples read in place.

Builders return bytes because the store keeps what partners send; overrides replace top-level fields. The examples
come from ``<repo>/../shared/test-vectors/ocpi-2.2.1-examples`` (or ``$HUB_TEST_VECTORS``) and are never copied into
the repository: a test that needs one is skipped when the folder is absent.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
_ENCODER = msgspec.json.Encoder(decimal_format="number")
_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def _examples_dir() -> Path:
    base = os.environ.get("HUB_TEST_VECTORS")
    root = Path(base) if base else REPO_ROOT.parent / "shared" / "test-vectors"
    return root / "ocpi-2.2.1-examples"


def example(name: str) -> bytes:
    """The bytes of a specification example, or skip the test when the examples are not on this machine."""
    path = _examples_dir() / name
    if not path.is_file():
        pytest.skip(f"OCPI example {path} not found")
    return path.read_bytes()


def dump(value: Any) -> bytes:
    return _ENCODER.encode(value)


def load(data: bytes) -> Any:
    """Decode JSON with non-integer numbers as Decimal, as the store does."""
    return _DECODER.decode(data)


def connector(connector_id: str = "1", *, last_updated: str = "2026-01-01T10:00:00Z", **fields: Any) -> dict[str, Any]:
    return {
        "id": connector_id,
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 16,
        "tariff_ids": ["T1"],
        "last_updated": last_updated,
        **fields,
    }


def evse(uid: str = "EVSE1", *, last_updated: str = "2026-01-01T10:00:00Z", **fields: Any) -> dict[str, Any]:
    return {
        "uid": uid,
        "evse_id": f"NL*CPO*E{uid}",
        "status": "AVAILABLE",
        "connectors": [connector("1", last_updated=last_updated), connector("2", last_updated=last_updated)],
        "last_updated": last_updated,
        **fields,
    }


def location(
    location_id: str = "LOC1",
    *,
    country_code: str = "NL",
    party_id: str = "CPO",
    last_updated: str = "2026-01-01T10:00:00Z",
    **fields: Any,
) -> bytes:
    return dump(
        {
            "country_code": country_code,
            "party_id": party_id,
            "id": location_id,
            "publish": True,
            "name": "Station",
            "address": "Main Street 1",
            "city": "Utrecht",
            "country": "NLD",
            "coordinates": {"latitude": "52.09074", "longitude": "5.12142"},
            "evses": [evse("EVSE1", last_updated=last_updated), evse("EVSE2", last_updated=last_updated)],
            "time_zone": "Europe/Amsterdam",
            "last_updated": last_updated,
            **fields,
        }
    )


def tariff(
    tariff_id: str = "T1",
    *,
    country_code: str = "NL",
    party_id: str = "CPO",
    price: str = "0.25",
    last_updated: str = "2026-01-01T10:00:00Z",
    **fields: Any,
) -> bytes:
    return dump(
        {
            "country_code": country_code,
            "party_id": party_id,
            "id": tariff_id,
            "currency": "EUR",
            "elements": [{"price_components": [{"type": "ENERGY", "price": Decimal(price), "step_size": 1}]}],
            "last_updated": last_updated,
            **fields,
        }
    )


def token(
    uid: str = "TOKEN1",
    *,
    country_code: str = "DE",
    party_id: str = "MSP",
    token_type: str = "RFID",
    last_updated: str = "2026-01-01T10:00:00Z",
    **fields: Any,
) -> bytes:
    return dump(
        {
            "country_code": country_code,
            "party_id": party_id,
            "uid": uid,
            "type": token_type,
            "contract_id": f"{country_code}-{party_id}-C{uid}",
            "issuer": "Issuer",
            "valid": True,
            "whitelist": "ALLOWED",
            "last_updated": last_updated,
            **fields,
        }
    )


def cdr_token(country_code: str = "DE", party_id: str = "MSP", uid: str = "TOKEN1") -> dict[str, Any]:
    return {
        "country_code": country_code,
        "party_id": party_id,
        "uid": uid,
        "type": "RFID",
        "contract_id": f"{country_code}-{party_id}-C{uid}",
    }


def period(start: str, kwh: str) -> dict[str, Any]:
    return {"start_date_time": start, "dimensions": [{"type": "ENERGY", "volume": Decimal(kwh)}]}


def charging_session(
    session_id: str = "S1",
    *,
    country_code: str = "NL",
    party_id: str = "CPO",
    emsp: tuple[str, str] = ("DE", "MSP"),
    last_updated: str = "2026-01-01T10:00:00Z",
    **fields: Any,
) -> bytes:
    return dump(
        {
            "country_code": country_code,
            "party_id": party_id,
            "id": session_id,
            "start_date_time": "2026-01-01T10:00:00Z",
            "kwh": Decimal("0.00"),
            "cdr_token": cdr_token(*emsp),
            "auth_method": "WHITELIST",
            "location_id": "LOC1",
            "evse_uid": "EVSE1",
            "connector_id": "1",
            "currency": "EUR",
            "charging_periods": [period("2026-01-01T10:00:00Z", "1.5")],
            "status": "ACTIVE",
            "last_updated": last_updated,
            **fields,
        }
    )


def cdr(
    cdr_id: str = "CDR1",
    *,
    country_code: str = "NL",
    party_id: str = "CPO",
    emsp: tuple[str, str] = ("DE", "MSP"),
    total: str = "4.00",
    last_updated: str = "2026-01-01T12:00:00Z",
    **fields: Any,
) -> bytes:
    return dump(
        {
            "country_code": country_code,
            "party_id": party_id,
            "id": cdr_id,
            "start_date_time": "2026-01-01T10:00:00Z",
            "end_date_time": "2026-01-01T11:00:00Z",
            "session_id": "S1",
            "cdr_token": cdr_token(*emsp),
            "auth_method": "WHITELIST",
            "cdr_location": {
                "id": "LOC1",
                "address": "Main Street 1",
                "city": "Utrecht",
                "country": "NLD",
                "coordinates": {"latitude": "52.09074", "longitude": "5.12142"},
                "evse_uid": "EVSE1",
                "evse_id": "NL*CPO*EEVSE1",
                "connector_id": "1",
                "connector_standard": "IEC_62196_T2",
                "connector_format": "SOCKET",
                "connector_power_type": "AC_3_PHASE",
            },
            "currency": "EUR",
            "charging_periods": [period("2026-01-01T10:00:00Z", "16")],
            "total_cost": {"excl_vat": Decimal(total), "incl_vat": Decimal(total)},
            "total_energy": Decimal("16.000"),
            "total_time": Decimal("1.0"),
            "last_updated": last_updated,
            **fields,
        }
    )
