"""Netting (clearing notes §3.2): the worked example, invariants for random statement sets, and refusal of bad sums."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.settlement.netting import HUB, Gross, NettingError, _advice, net

D = Decimal


def test_the_example_of_the_clearing_notes() -> None:
    claims = [
        Gross(creditor="A", debtor="X", currency="EUR", amount=D(1000)),
        Gross(creditor="A", debtor="Y", currency="EUR", amount=D(200)),
        Gross(creditor="U", debtor="X", currency="EUR", amount=D(300)),
        Gross(creditor="A", debtor="U", currency="EUR", amount=D(150)),
    ]
    result = net(claims)
    assert result.multilateral["EUR"] == {"A": D(1350), "U": D(150), "X": D(-1300), "Y": D(-200)}
    assert result.bilateral["EUR"] == {"A<>U": D(150), "A<>X": D(1000), "A<>Y": D(200), "U<>X": D(300)}
    assert [(p.payer, p.payee, p.amount) for p in result.payments] == [
        ("X", "A", D(1300)),
        ("Y", "U", D(150)),
        ("Y", "A", D(50)),
    ]


def test_fees_go_to_the_hub() -> None:
    result = net(
        [
            Gross(creditor="A", debtor="X", currency="EUR", amount=D(100), fees_creditor=D(2), fees_debtor=D(1)),
            Gross(creditor="X", debtor="A", currency="EUR", amount=D(30), fees_creditor=D("0.5")),
        ]
    )
    assert result.bilateral["EUR"] == {"A<>X": D(70)}
    assert result.multilateral_after_fees["EUR"] == {"A": D(68), "X": D("-71.5")}
    assert result.hub_fees["EUR"] == D("3.5")
    assert {(p.payer, p.payee, p.amount) for p in result.payments} == {("X", "A", D(68)), ("X", HUB, D("3.5"))}


def test_currencies_are_netted_apart() -> None:
    result = net(
        [
            Gross(creditor="A", debtor="X", currency="EUR", amount=D(10)),
            Gross(creditor="X", debtor="A", currency="CHF", amount=D(10)),
        ]
    )
    assert result.multilateral == {"CHF": {"A": D(-10), "X": D(10)}, "EUR": {"A": D(10), "X": D(-10)}}
    assert len(result.payments) == 2


def test_an_advice_that_cannot_balance_raises() -> None:
    with pytest.raises(NettingError, match="unpaid"):
        _advice("EUR", {"A": D(10), "X": D(-9)})


_PARTIES = st.sampled_from(["NL/A", "NL/B", "DE/X", "DE/Y", "FR/U"])
_MONEY = st.decimals(min_value=-1000, max_value=10_000, places=2, allow_nan=False, allow_infinity=False)
_FEE = st.decimals(min_value=0, max_value=50, places=2, allow_nan=False, allow_infinity=False)
_CLAIM = st.builds(
    Gross,
    creditor=_PARTIES,
    debtor=_PARTIES,
    currency=st.sampled_from(["EUR", "CHF"]),
    amount=_MONEY,
    fees_creditor=_FEE,
    fees_debtor=_FEE,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_CLAIM, max_size=25))
def test_netting_invariants_hold_for_random_statement_sets(claims: list[Gross]) -> None:
    result = net(claims)
    for currency, positions in result.multilateral.items():
        assert sum(positions.values(), D(0)) == 0
        after = result.multilateral_after_fees[currency]
        assert sum(after.values(), D(0)) == -result.hub_fees[currency]
        # Each party's bilateral nets add up to its multilateral net.
        for party, position in positions.items():
            from_pairs = D(0)
            for key, amount in result.bilateral[currency].items():
                i, j = key.split("<>")
                from_pairs += amount if party == i else -amount if party == j else 0
            assert from_pairs == position
        # Paying the advice leaves every party (and the hub) at exactly zero, in at most n - 1 payments.
        balance: dict[str, Decimal] = defaultdict(Decimal, after)
        balance[HUB] += result.hub_fees[currency]
        owing = [party for party, value in balance.items() if value != 0]
        payments = [p for p in result.payments if p.currency == currency]
        assert len(payments) <= max(len(owing) - 1, 0)
        for payment in payments:
            assert payment.amount > 0
            balance[payment.payer] += payment.amount
            balance[payment.payee] -= payment.amount
        assert all(value == 0 for value in balance.values())
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for claim in claims:
        expected[claim.currency] += claim.fees_creditor + claim.fees_debtor
    assert result.hub_fees == dict(expected)
