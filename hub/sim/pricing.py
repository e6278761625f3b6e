"""The simulated CPOs' tariff (€0.25 start fee + €0.30/kWh, 21 % VAT) and the CDR totals it gives."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

START_FEE: Final = Decimal("0.25")
ENERGY_PRICE: Final = Decimal("0.30")
VAT: Final = Decimal(21)
CURRENCY: Final = "EUR"
_CENT: Final = Decimal("0.01")


def _round(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def session_cost(kwh: Decimal) -> dict[str, dict[str, Decimal]]:
    """The CDR's ``total_cost``, ``total_fixed_cost`` and ``total_energy_cost`` (excl/incl VAT, 2 decimals)."""
    fixed = START_FEE
    energy = ENERGY_PRICE * kwh
    factor = 1 + VAT / 100
    return {
        "total_cost": {"excl_vat": _round(fixed + energy), "incl_vat": _round((fixed + energy) * factor)},
        "total_fixed_cost": {"excl_vat": _round(fixed), "incl_vat": _round(fixed * factor)},
        "total_energy_cost": {"excl_vat": _round(energy), "incl_vat": _round(energy * factor)},
    }


def tariff(country_code: str, party_id: str, tariff_id: str, last_updated: str) -> dict[str, Any]:
    """The OCPI Tariff object of a simulated CPO."""
    return {
        "country_code": country_code,
        "party_id": party_id,
        "id": tariff_id,
        "currency": CURRENCY,
        "elements": [
            {
                "price_components": [
                    {"type": "FLAT", "price": START_FEE, "vat": VAT, "step_size": 1},
                    {"type": "ENERGY", "price": ENERGY_PRICE, "vat": VAT, "step_size": 1},
                ]
            }
        ],
        "last_updated": last_updated,
    }
