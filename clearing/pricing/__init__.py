"""OCPI 2.2.1 tariff pricing: recompute a CDR's totals from its charging periods and tariff(s), with reasons.

Pure: the standard library and msgspec only, no I/O (an import-linter contract enforces it). Entry points:

* `price_cdr` prices a decoded CDR view with its own tariffs or the given ones;
* `price_session` prices charging periods between a start and an end;
* `decode_cdr` / `decode_tariff` / `decode_tariffs` read JSON leniently into the views of `clearing.pricing.inputs`;
* `compare_totals` lists where a CDR's stated totals differ from the computed ones.

The rules and the choices the spec leaves open are in docs/adr/0101-tariff-pricing-rules.md; rounding is in
docs/adr/0102-pricing-precision-and-rounding.md.
"""

from clearing.pricing.compare import PRICE_FIELDS, VOLUME_FIELDS, TotalDifference, compare_totals
from clearing.pricing.engine import PricingError, price_cdr, price_session
from clearing.pricing.inputs import (
    Cdr,
    CdrDimension,
    CdrLocation,
    ChargingPeriod,
    InputError,
    PriceComponent,
    StatedPrice,
    Tariff,
    TariffElement,
    TariffRestrictions,
    cdr_from_builtins,
    decode_cdr,
    decode_tariff,
    decode_tariffs,
    tariff_from_builtins,
    tariffs_from_builtins,
)
from clearing.pricing.result import LimitAdjustment, Price, PriceLine, PriceResult, PriceWarning, StepAdjustment

__all__ = [
    "PRICE_FIELDS",
    "VOLUME_FIELDS",
    "Cdr",
    "CdrDimension",
    "CdrLocation",
    "ChargingPeriod",
    "InputError",
    "LimitAdjustment",
    "Price",
    "PriceComponent",
    "PriceLine",
    "PriceResult",
    "PriceWarning",
    "PricingError",
    "StatedPrice",
    "StepAdjustment",
    "Tariff",
    "TariffElement",
    "TariffRestrictions",
    "TotalDifference",
    "cdr_from_builtins",
    "compare_totals",
    "decode_cdr",
    "decode_tariff",
    "decode_tariffs",
    "price_cdr",
    "price_session",
    "tariff_from_builtins",
    "tariffs_from_builtins",
]
