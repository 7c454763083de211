"""Risk's unfilled quantity per (broker, symbol, side): the sum of its open orders', always."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ult_actors.actors.risk import RiskState
from ult_actors.messages import OrderRequest

# A few quantity objects, reused: orders may hold the very same ``Decimal``.
SIZES = [Decimal("1"), Decimal("2.5"), Decimal("2.50"), Decimal("7")]


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.booleans(),  # open (or open again, replacing) or drop
            st.integers(min_value=0, max_value=5),  # which order
            st.sampled_from(("AAPL", "MSFT")),
            st.sampled_from(("buy", "sell")),
            st.integers(min_value=0, max_value=len(SIZES) - 1),
        ),
        max_size=40,
    )
)
def test_the_open_quantity_of_each_side_is_what_its_open_orders_leave(
    steps: list[tuple[bool, int, str, str, int]],
) -> None:
    state = RiskState()
    expected: dict[str, tuple[tuple[str, str, str], Decimal]] = {}
    for opens, n, symbol, side, size in steps:
        coid = f"c-{n}"
        if opens:
            state.set_open(OrderRequest(
                symbol=symbol, side=side, qty=SIZES[size],  # type: ignore[arg-type]
                broker="paper", client_order_id=coid,
            ))  # fmt: skip
            expected[coid] = (("paper", symbol, side), SIZES[size])
        else:
            state.drop_open(coid)
            expected.pop(coid, None)
        sums: dict[tuple[str, str, str], Decimal] = {}
        for key, qty in expected.values():
            sums[key] = sums.get(key, Decimal(0)) + qty
        # Every side with an open order and only those, at the sum of their quantities.
        assert state.open_qty == {key: total for key, total in sums.items() if total}
