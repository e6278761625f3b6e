"""Commercial terms per (CPO, eMSP), effective-dated, and the rounding rule of statement lines (ADR 0208, 0209).

Terms say the currency, the price-verification tolerance, the approval window, the rounding rule and the hub's fee
rules, each with the party that pays it. Without terms a pair settles with the defaults: no fees, a 14-day approval
window, half-up to 2 decimals, VAT as the CDR states it, no currency conversion.

VAT (ADR 0209; clearing notes §1.5 "VAT": "make the VAT treatment a configured property of each agreement ...
Never infer it"): ``vat_regime`` is one of

* ``as_stated`` (the default when nothing is configured): the CDR's own ``incl_vat`` is used, as before ADR 0209,
  and the statement says the VAT is as stated;
* ``domestic``: VAT at ``vat_rate`` percent on the wholesale amount excl. VAT;
* ``reverse_charge``: no VAT on the statement; a note says the recipient accounts for it;
* ``outside_scope``: no VAT; a note says the supply is outside the scope of VAT.

Currency (notes §1.5 "Multiple currencies": "Convert only if an agreement says so, using a documented reference rate
and a rate date fixed per period"): with ``settlement_currency`` set, CDRs and adjustments of the pair in another
currency are converted at the period's reference rate from ``rate_source``; without it they settle per currency.
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
    "VAT_NOTES",
    "VAT_REGIMES",
    "FeeRule",
    "Terms",
    "TermsError",
    "parse_party",
    "plain",
    "round_amount",
]

DEFAULT_APPROVAL_WINDOW_DAYS: Final = 14
#: per_session: rate per CDR (a credit CDR counts -1); per_kwh: rate per kWh (credits negative); percent: percent of
#: the CDR lines' amount excl. VAT; per_period: a fixed amount once per statement.
FEE_KINDS: Final = ("per_session", "per_kwh", "percent", "per_period")
ROUNDING_RULES: Final = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}
VAT_REGIMES: Final = ("as_stated", "domestic", "reverse_charge", "outside_scope")
#: The statement's VAT note per regime when the terms give none. The wording is a default for the statement, not tax
#: advice: the notes ask for each agreement's treatment to be validated by tax counsel, who may set ``vat_note``.
VAT_NOTES: Final = {
    "as_stated": "VAT as stated on the CDRs (no VAT regime configured for this agreement)",
    "domestic": "VAT at {rate} %",
    "reverse_charge": "Reverse charge: no VAT charged; the recipient accounts for the VAT",
    "outside_scope": "Outside the scope of VAT",
}


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
    vat_regime: str = "as_stated"
    #: Percent, e.g. 19 for 19 %; only with ``domestic``.
    vat_rate: Decimal | None = None
    #: Overrides the regime's default note on statements (e.g. the legal reference counsel wants printed).
    vat_note: str | None = None
    #: Convert CDRs and adjustments in other currencies into this one; None: settle per currency (no conversion).
    settlement_currency: str | None = None
    #: The reference rate source the agreement names (e.g. ECB); the period's rate must come from it.
    rate_source: str | None = None

    @property
    def note(self) -> str:
        """The VAT note printed on the statement."""
        if self.vat_note:
            return self.vat_note
        return VAT_NOTES[self.vat_regime].format(rate=None if self.vat_rate is None else plain(self.vat_rate))

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
        self._check_vat()
        self._check_conversion()

    def _check_vat(self) -> None:
        if self.vat_regime not in VAT_REGIMES:
            raise TermsError(f"VAT regime {self.vat_regime!r} is not one of {', '.join(VAT_REGIMES)}")
        if self.vat_regime == "domestic":
            if self.vat_rate is None or not 0 <= self.vat_rate < 100:
                raise TermsError("domestic VAT needs a rate in percent, at least 0 and below 100 (e.g. 19)")
        elif self.vat_rate is not None:
            # A rate with another regime would be ignored; refuse it rather than guess what was meant.
            raise TermsError(f"a VAT rate applies only to the domestic regime, not to {self.vat_regime}")

    def _check_conversion(self) -> None:
        if self.settlement_currency is None:
            if self.rate_source is not None:
                raise TermsError("a rate source needs a settlement currency to convert into")
            return
        if len(self.settlement_currency) != 3 or not self.settlement_currency.isalpha():
            raise TermsError(f"settlement currency {self.settlement_currency!r} is not an ISO 4217 code")
        if not self.rate_source:
            # Notes §3.4: convert only when the agreement names the reference rate source.
            raise TermsError("converting into a settlement currency needs the reference rate source (e.g. ECB)")


def parse_party(value: str) -> tuple[str, str]:
    """``"NL/CPO"`` → ``("NL", "CPO")``; raises `TermsError` on anything else."""
    country_code, sep, party_id = value.partition("/")
    if not sep or len(country_code) != 2 or not 1 <= len(party_id) <= 3 or not (country_code + party_id).isalnum():
        raise TermsError(f"party {value!r} is not COUNTRY_CODE/PARTY_ID (e.g. NL/CPO)")
    return country_code.upper(), party_id.upper()


def plain(value: Decimal) -> Decimal:
    """Without trailing zeros and never in exponent form: 19.0000 → 19, 20.5000 → 20.5 (``normalize`` gives 2E+1)."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal  # type: ignore[operator]


def round_amount(value: Decimal, rule: str = "half_up", decimals: int = 2) -> Decimal:
    """Round one statement line by the terms' rule; the only place settlement rounds (ADR 0208)."""
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUNDING_RULES[rule])
