"""Netting of a period's statements (clearing notes §3.2; ADR 0208): pure, `Decimal` only, with invariant checks.

Per currency:

* gross G(i→j): what eMSP j owes CPO i (statement ``payable``: CDR lines incl. VAT plus adjustments);
* bilateral net N(i, j) = G(i→j) - G(j→i) for each unordered pair (positive: j pays i);
* multilateral net M(i) = Σⱼ G(i→j) - Σⱼ G(j→i) (positive: i receives); Σᵢ M(i) = 0;
* with hub fees F(i) charged to i: M'(i) = M(i) - F(i); Σᵢ M'(i) = -Σᵢ F(i), which the hub receives;
* payment advice from M' plus the hub's +ΣF: the largest debtor pays the largest creditor, again and again (at most
  n - 1 payments).

`net` raises `NettingError` when an invariant does not hold, instead of advising wrong payments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Final

import msgspec

__all__ = ["HUB", "Gross", "Netting", "NettingError", "Payment", "net"]

HUB: Final = "HUB"
_ZERO: Final = Decimal(0)


class NettingError(ArithmeticError):
    """A netting invariant does not hold; nothing may be paid on this result."""


class Gross(msgspec.Struct, frozen=True, kw_only=True):
    """One statement's contribution: ``debtor`` (eMSP) owes ``creditor`` (CPO) ``amount``; fees owed to the hub."""

    creditor: str
    debtor: str
    currency: str
    amount: Decimal
    fees_creditor: Decimal = _ZERO
    fees_debtor: Decimal = _ZERO


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    payer: str
    payee: str
    currency: str
    amount: Decimal


class Netting(msgspec.Struct, frozen=True, kw_only=True):
    """Per currency: gross claims, bilateral nets, multilateral nets before and after fees, hub revenue, payments."""

    gross: dict[str, dict[str, Decimal]]
    bilateral: dict[str, dict[str, Decimal]]
    multilateral: dict[str, dict[str, Decimal]]
    multilateral_after_fees: dict[str, dict[str, Decimal]]
    hub_fees: dict[str, Decimal]
    payments: list[Payment]


def _advice(currency: str, positions: dict[str, Decimal]) -> list[Payment]:
    receivers = {p: a for p, a in positions.items() if a > 0}
    payers = {p: -a for p, a in positions.items() if a < 0}
    payments: list[Payment] = []
    while receivers and payers:
        # Largest first; ties broken by name so the advice is deterministic.
        payer = max(payers, key=lambda p: (payers[p], p))
        payee = max(receivers, key=lambda p: (receivers[p], p))
        amount = min(payers[payer], receivers[payee])
        payments.append(Payment(payer=payer, payee=payee, currency=currency, amount=amount))
        for side, party in ((payers, payer), (receivers, payee)):
            side[party] -= amount
            if side[party] == 0:
                del side[party]
    if receivers or payers:
        raise NettingError(f"{currency}: positions left unpaid after the advice: {receivers or payers}")
    return payments


def net(claims: Iterable[Gross]) -> Netting:
    """Net the statements' claims per currency; raise `NettingError` if an invariant fails."""
    gross: dict[str, dict[tuple[str, str], Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    fees: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for claim in claims:
        gross[claim.currency][claim.creditor, claim.debtor] += claim.amount
        fees[claim.currency][claim.creditor] += claim.fees_creditor
        fees[claim.currency][claim.debtor] += claim.fees_debtor
    out_gross: dict[str, dict[str, Decimal]] = {}
    out_bilateral: dict[str, dict[str, Decimal]] = {}
    out_multi: dict[str, dict[str, Decimal]] = {}
    out_after: dict[str, dict[str, Decimal]] = {}
    hub_fees: dict[str, Decimal] = {}
    payments: list[Payment] = []
    for currency in sorted(gross.keys() | fees.keys()):
        claims_k = gross[currency]
        parties = sorted({p for pair in claims_k for p in pair} | set(fees[currency]))
        out_gross[currency] = {f"{i}->{j}": a for (i, j), a in sorted(claims_k.items())}
        bilateral: dict[str, Decimal] = {}
        for i, j in sorted({tuple(sorted(pair)) for pair in claims_k}):
            bilateral[f"{i}<>{j}"] = claims_k.get((i, j), _ZERO) - claims_k.get((j, i), _ZERO)
        multi = dict.fromkeys(parties, _ZERO)
        for (i, j), amount in claims_k.items():
            multi[i] += amount
            multi[j] -= amount
        after = {p: multi[p] - fees[currency].get(p, _ZERO) for p in parties}
        total_fees = sum(fees[currency].values(), _ZERO)
        if sum(multi.values(), _ZERO) != 0:
            raise NettingError(f"{currency}: multilateral positions sum to {sum(multi.values(), _ZERO)}, not 0")
        if sum(after.values(), _ZERO) != -total_fees:
            raise NettingError(f"{currency}: positions after fees do not sum to minus the hub fees ({total_fees})")
        for party in parties:
            from_pairs = _ZERO
            for key, amount in bilateral.items():
                i, j = key.split("<>")
                from_pairs += amount if party == i else -amount if party == j else _ZERO
            if from_pairs != multi[party]:
                raise NettingError(f"{currency}: the bilateral nets of {party} do not add up to its multilateral net")
        out_bilateral[currency] = bilateral
        out_multi[currency] = multi
        out_after[currency] = after
        hub_fees[currency] = total_fees
        positions = dict(after)
        if total_fees:
            positions[HUB] = positions.get(HUB, _ZERO) + total_fees
        payments.extend(_advice(currency, positions))
    return Netting(
        gross=out_gross,
        bilateral=out_bilateral,
        multilateral=out_multi,
        multilateral_after_fees=out_after,
        hub_fees=hub_fees,
        payments=payments,
    )
