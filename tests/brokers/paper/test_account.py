"""The paper account's money: the funds check's figure against the one summed over every holding."""

from __future__ import annotations

import copy
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ult_actors.brokers.paper.account import ZERO, PaperAccount

SYMBOLS = ("AAPL", "MSFT", "EUR_USD")

prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(5000), places=4)
fills = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.sampled_from(("buy", "sell")),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal(500), places=2),
        prices,
        st.decimals(min_value=Decimal(0), max_value=Decimal(3), places=3),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    cash=st.decimals(min_value=Decimal(0), max_value=Decimal(10) ** 12, places=2),
    fills=fills,
    marks=st.lists(prices, min_size=len(SYMBOLS), max_size=len(SYMBOLS)),
    reserved=st.decimals(min_value=Decimal(0), max_value=Decimal(10) ** 6, places=4),
)
def test_the_funds_check_sees_the_buying_power_summed_over_every_holding(
    cash: Decimal,
    fills: list[tuple[str, str, Decimal, Decimal, Decimal]],
    marks: list[Decimal],
    reserved: Decimal,
) -> None:
    # ``free`` passes over the shorts only; ``buying_power`` (what the account reports)
    # over everything. They must agree after every fill: longs opened, shorts opened,
    # flipped and closed, and in an account loaded with those holdings.
    account = PaperAccount(cash)
    at = dict(zip(SYMBOLS, marks, strict=True))
    for symbol, side, qty, price, commission in fills:
        account.apply_fill(symbol, side, qty, price, commission)  # type: ignore[arg-type]
        assert account.free(at.__getitem__, reserved) == account.buying_power(at, reserved)
        assert account.free(at.__getitem__) == account.buying_power(at, ZERO)  # none reserved
    loaded = PaperAccount(account.cash, copy.deepcopy(account.holdings))
    assert loaded.free(at.__getitem__, reserved) == account.buying_power(at, reserved)
    assert loaded.free(at.__getitem__) == account.buying_power(at, ZERO)


def test_nothing_reserved_a_starting_cash_of_more_digits_than_the_context_counts_rounded() -> None:
    # The funds check compares an order's cost with ``cash - reserved`` as Decimal works it
    # out (28 digits): with nothing reserved it skips the subtraction, but not the rounding
    # a starting cash written with more digits gets from it (a fill's cash has it already).
    cash = Decimal("1234567890123456789012345678.96")  # 30 digits
    account = PaperAccount(cash)
    assert account.free(dict[str, Decimal]().__getitem__) == cash - ZERO != cash
    account.apply_fill("AAPL", "buy", Decimal(1), Decimal("0.5"), ZERO)
    assert account.free(dict[str, Decimal]().__getitem__) == account.cash == cash - Decimal("0.5")
