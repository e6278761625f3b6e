"""Rules on currency and amounts (clearing notes §1.6 CUR-MATCH, SUM-TOTALS; mod_cdrs §10.3.1, types "Price")."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Final

from clearing.document import number
from clearing.facts import Facts
from clearing.pricing import PRICE_FIELDS
from clearing.rules.base import Issue, Severity, price_fields, rule

# ISO 4217 alphabetic codes in use (list one of the ISO 4217 maintenance agency, 2025).
_ISO_4217_CODES: Final = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF
    CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
    GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR
    LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK
    PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG
    XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL
"""
# ISO 4217 codes that are not money a charging session can be paid in: precious metals, bond-market units,
# fund codes, SDR, and the codes for testing and for "no currency".
_NOT_FOR_PAYMENT_CODES: Final = (
    "XAG XAU XPD XPT XBA XBB XBC XBD XDR XSU XUA XTS XXX BOV CHE CHW CLF COU MXV USN UYI UYW"
)
ISO_4217: Final = frozenset(_ISO_4217_CODES.split())
NOT_FOR_PAYMENT: Final = frozenset(_NOT_FOR_PAYMENT_CODES.split())
_COMPONENTS: Final = tuple(name for name in PRICE_FIELDS if name != "total_cost")


def currency_of(doc: Mapping[str, Any]) -> str | None:
    value = doc.get("currency")
    return value.upper() if isinstance(value, str) else None


@rule("CDR030", Severity.ERROR, "currency is not an ISO 4217 code", catalogue="CUR-MATCH")
def iso_currency(facts: Facts) -> Iterator[Issue]:
    value = facts.doc.get("currency")
    if not isinstance(value, str):
        return  # missing: the schema rule (CDR001) reports it
    code = value.upper()
    if code not in ISO_4217:
        yield Issue(f"currency {value!r} is not an ISO 4217 currency code", "/currency")
    elif code in NOT_FOR_PAYMENT:
        yield Issue(f"currency {value!r} is an ISO 4217 code but not a currency a session can be paid in", "/currency")


@rule("CDR031", Severity.ERROR, "tariff currency differs from the CDR currency", catalogue="CUR-MATCH")
def tariff_currency(facts: Facts) -> Iterator[Issue]:
    currency = currency_of(facts.doc)
    if currency is None:
        return
    for use in facts.tariffs.uses:
        if use.doc is None:
            continue
        tariff_currency_ = currency_of(use.doc)
        if tariff_currency_ is not None and tariff_currency_ != currency:
            where = f"{use.embedded_pointer}/currency" if use.source == "cdr" and use.embedded_pointer else "/currency"
            yield Issue(
                f"tariff {use.tariff_id} ({use.source}) is in {tariff_currency_} but the CDR is in {currency}", where
            )


def _limits(facts: Facts, basis: str) -> set[Decimal]:
    """The min_price and max_price amounts of the tariffs used: a total clamped to one of them is not a sum."""
    found: set[Decimal] = set()
    for use in facts.tariffs.uses:
        if use.doc is None:
            continue
        for name in ("min_price", "max_price"):
            limit = use.doc.get(name)
            amount = number(limit.get(basis)) if isinstance(limit, dict) else None
            if amount is not None:
                found.add(amount)
    return found


@rule("CDR032", Severity.WARNING, "total_cost differs from the sum of the cost components", catalogue="SUM-TOTALS")
def total_is_sum(facts: Facts) -> Iterator[Issue]:
    fields = {name: (excl, incl) for name, excl, incl in price_fields(facts.doc)}
    if "total_cost" not in fields:
        return
    present = [fields[name] for name in _COMPONENTS if name in fields]
    if not present:
        return  # a CDR may state only total_cost (the components are optional)
    for position, basis in enumerate(("excl_vat", "incl_vat")):
        total = fields["total_cost"][position]
        parts = [part[position] for part in present]
        if total is None or any(part is None for part in parts):
            continue
        summed = sum((part for part in parts if part is not None), Decimal(0))
        if abs(summed - total) <= facts.tolerance:
            continue
        if facts.cdr.credit and abs(summed + total) <= facts.tolerance:
            continue  # a credit CDR negates total_cost only (mod_cdrs §10.1.1); its components may stay positive
        if abs(total) in {abs(limit) for limit in _limits(facts, basis)}:
            continue  # clamped to the tariff's min_price or max_price (mod_tariffs): the sum is not the total
        yield Issue(f"total_cost.{basis} is {total} but the cost components add up to {summed}", f"/total_cost/{basis}")


@rule("CDR033", Severity.WARNING, "amount including VAT below the amount excluding VAT", catalogue="SUM-TOTALS")
def vat_not_negative(facts: Facts) -> Iterator[Issue]:
    for name, excl, incl in price_fields(facts.doc):
        if excl is None or incl is None:
            continue
        # A credit CDR holds negative amounts: there the amount including VAT is the more negative one.
        if (excl >= 0 and incl < excl) or (excl < 0 and incl > excl):
            yield Issue(f"{name}: incl_vat {incl} is smaller in size than excl_vat {excl}", f"/{name}/incl_vat")


@rule("CDR034", Severity.ERROR, "negative amount in a CDR that is not a credit", catalogue="CRD-LINK")
def negative_amounts(facts: Facts) -> Iterator[Issue]:
    if facts.cdr.credit:
        return
    for name, excl, incl in price_fields(facts.doc):
        for basis, amount in (("excl_vat", excl), ("incl_vat", incl)):
            if amount is not None and amount < 0:
                yield Issue(
                    f"{name}.{basis} is negative ({amount}); only a credit CDR carries negative amounts "
                    "(mod_cdrs §10.1.1)",
                    f"/{name}/{basis}",
                )
