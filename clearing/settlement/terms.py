"""Commercial terms per (CPO, eMSP), effective-dated, and the rounding rule of statement lines (ADR 0208).

Terms say the currency, the price-verification tolerance, the approval window, the rounding rule and the hub's fee
rules, each with the party that pays it. Without terms a pair settles with `DEFAULT_TERMS`: no fees, a 14-day
approval window, half-up to 2 decimals.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Final, Literal

import msgspec

__all__ = [
    "DEFAULT_APPROVAL_WINDOW_DAYS",
    "FEE_KINDS",
    "ROUNDING_RULES",
    "FeeRule",
    "Terms",
    "TermsError",
    "parse_party",
    "round_amount",
]

DEFAULT_APPROVAL_WINDOW_DAYS: Final = 14
#: per_session: rate per CDR (a credit CDR counts -1); per_kwh: rate per kWh (credits negative); percent: percent of
#: the CDR lines' amount excl. VAT; per_period: a fixed amount once per statement.
FEE_KINDS: Final = ("per_session", "per_kwh", "percent", "per_period")
ROUNDING_RULES: Final = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}


class TermsError(ValueError):
    """Terms that cannot be used; the message says why."""


class FeeRule(msgspec.Struct, frozen=True, kw_only=True):
    rate: Decimal
    payer: Literal["cpo", "emsp"]


class Terms(msgspec.Struct, frozen=True, kw_only=True):
    """The commercial terms of one (CPO, eMSP) pair from ``valid_from`` on; parties as ``CC/PID``."""

    cpo: str
    emsp: str
    valid_from: datetime
    currency: str
    tolerance: Decimal | None = None
    approval_window_days: int = DEFAULT_APPROVAL_WINDOW_DAYS
    rounding: str = "half_up"
    decimals: int = 2
    fees: dict[str, FeeRule] = msgspec.field(default_factory=dict)

    def check(self) -> None:
        parse_party(self.cpo)
        parse_party(self.emsp)
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise TermsError(f"currency {self.currency!r} is not an ISO 4217 code")
        if self.rounding not in ROUNDING_RULES:
            raise TermsError(f"rounding {self.rounding!r} is not one of {', '.join(ROUNDING_RULES)}")
        if not 0 <= self.decimals <= 4:
            raise TermsError("decimals must be between 0 and 4")
        if self.approval_window_days < 0:
            raise TermsError("the approval window cannot be negative")
        if self.tolerance is not None and self.tolerance < 0:
            raise TermsError("the tolerance cannot be negative")
        for kind, rule in self.fees.items():
            if kind not in FEE_KINDS:
                raise TermsError(f"unknown fee {kind!r} (known: {', '.join(FEE_KINDS)})")
            if rule.rate < 0:
                raise TermsError(f"fee {kind} has a negative rate")


def parse_party(value: str) -> tuple[str, str]:
    """``"NL/CPO"`` → ``("NL", "CPO")``; raises `TermsError` on anything else."""
    country_code, sep, party_id = value.partition("/")
    if not sep or len(country_code) != 2 or not 1 <= len(party_id) <= 3 or not (country_code + party_id).isalnum():
        raise TermsError(f"party {value!r} is not COUNTRY_CODE/PARTY_ID (e.g. NL/CPO)")
    return country_code.upper(), party_id.upper()


def round_amount(value: Decimal, rule: str = "half_up", decimals: int = 2) -> Decimal:
    """Round one statement line by the terms' rule; the only place settlement rounds (ADR 0208)."""
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUNDING_RULES[rule])
