"""Hand-written OCPI objects for the clearing intake tests, as dicts (mutate them) and JSON bytes.

The baseline is one consistent world: CPO NL/CPO charges token TOKEN1 of eMSP DE/MSP at LOC1/EVSE1/connector 1
(22 kW) from 10:00 to 11:00 UTC on 2026-01-01, 16 kWh, tariff T1 at 0.25/kWh, so the CDR costs 4.00. With the
session, token, location and tariff stored, the baseline CDR has no findings at all and its price matches.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from hub.objects.service import ObjectStore

D = Decimal
NOW = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
_ENCODER = msgspec.json.Encoder(decimal_format="number")


def dump(value: Any) -> bytes:
    return _ENCODER.encode(value)


def tariff(
    tariff_id: str = "T1", *, price: str = "0.25", last_updated: str = "2025-12-01T00:00:00Z", **fields: Any
) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": tariff_id,
        "currency": "EUR",
        "elements": [{"price_components": [{"type": "ENERGY", "price": D(price), "step_size": 1}]}],
        "last_updated": last_updated,
        **fields,
    }


def token(**fields: Any) -> dict[str, Any]:
    return {
        "country_code": "DE",
        "party_id": "MSP",
        "uid": "TOKEN1",
        "type": "RFID",
        "contract_id": "DE-MSP-C0001",
        "issuer": "MSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2025-12-01T00:00:00Z",
        **fields,
    }


def connector(connector_id: str = "1", **fields: Any) -> dict[str, Any]:
    return {
        "id": connector_id,
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 32,
        "tariff_ids": ["T1"],
        "last_updated": "2025-12-01T00:00:00Z",
        **fields,
    }


def location(**fields: Any) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": "LOC1",
        "publish": True,
        "address": "Main Street 1",
        "city": "Utrecht",
        "country": "NLD",
        "coordinates": {"latitude": "52.09074", "longitude": "5.12142"},
        "evses": [
            {
                "uid": "EVSE1",
                "evse_id": "NL*CPO*E1",
                "status": "AVAILABLE",
                "connectors": [connector("1")],
                "last_updated": "2025-12-01T00:00:00Z",
            }
        ],
        "time_zone": "Europe/Amsterdam",
        "last_updated": "2025-12-01T00:00:00Z",
        **fields,
    }


def cdr_token(**fields: Any) -> dict[str, Any]:
    return {
        "country_code": "DE",
        "party_id": "MSP",
        "uid": "TOKEN1",
        "type": "RFID",
        "contract_id": "DE-MSP-C0001",
        **fields,
    }


def charging_session(**fields: Any) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": "S1",
        "start_date_time": "2026-01-01T10:00:00Z",
        "end_date_time": "2026-01-01T11:00:00Z",
        "kwh": D("16"),
        "cdr_token": cdr_token(),
        "auth_method": "WHITELIST",
        "location_id": "LOC1",
        "evse_uid": "EVSE1",
        "connector_id": "1",
        "currency": "EUR",
        "status": "COMPLETED",
        "last_updated": "2026-01-01T11:00:00Z",
        **fields,
    }


def price(excl: str, incl: str | None = None) -> dict[str, Decimal]:
    return {"excl_vat": D(excl), "incl_vat": D(incl if incl is not None else excl)}


def cdr(cdr_id: str = "CDR1", **fields: Any) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": cdr_id,
        "start_date_time": "2026-01-01T10:00:00Z",
        "end_date_time": "2026-01-01T11:00:00Z",
        "session_id": "S1",
        "cdr_token": cdr_token(),
        "auth_method": "WHITELIST",
        "cdr_location": {
            "id": "LOC1",
            "address": "Main Street 1",
            "city": "Utrecht",
            "country": "NLD",
            "coordinates": {"latitude": "52.09074", "longitude": "5.12142"},
            "evse_uid": "EVSE1",
            "evse_id": "NL*CPO*E1",
            "connector_id": "1",
            "connector_standard": "IEC_62196_T2",
            "connector_format": "SOCKET",
            "connector_power_type": "AC_3_PHASE",
        },
        "currency": "EUR",
        "tariffs": [tariff()],
        "charging_periods": [
            {
                "start_date_time": "2026-01-01T10:00:00Z",
                "dimensions": [{"type": "ENERGY", "volume": D("16")}, {"type": "TIME", "volume": D("1")}],
                "tariff_id": "T1",
            }
        ],
        "total_cost": price("4.00"),
        "total_energy_cost": price("4.00"),
        "total_energy": D("16"),
        "total_time": D("1"),
        "last_updated": "2026-01-01T12:00:00Z",
        **fields,
    }


def credit_of(original: dict[str, Any], credit_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """The credit CDR of ``original`` as mod_cdrs §10.1.1 describes it: the same data, total_cost negated."""
    credit = copy.deepcopy(original)
    credit["id"] = credit_id or f"{original['id']}-C"
    credit["credit"] = True
    credit["credit_reference_id"] = original["id"]
    total = original["total_cost"]
    credit["total_cost"] = {name: -value for name, value in total.items()}
    credit.update(fields)
    return credit


async def store_world(
    store: ObjectStore,
    db: AsyncSession,
    *,
    with_session: bool = True,
    with_token: bool = True,
    with_location: bool = True,
    with_tariff: bool = True,
) -> None:
    """Store the baseline's session, token, location and tariff (as routing would have) and commit."""
    if with_tariff:
        await store.put_tariff(db, "NL", "CPO", "T1", dump(tariff()))
    if with_location:
        await store.put_location(db, "NL", "CPO", "LOC1", dump(location()))
    if with_token:
        await store.put_token(db, "DE", "MSP", "TOKEN1", "RFID", dump(token()))
    if with_session:
        await store.put_session(db, "NL", "CPO", "S1", dump(charging_session()))
    await db.commit()
