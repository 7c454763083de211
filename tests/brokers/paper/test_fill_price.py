"""The paper venue's fill price, digit for digit, against its rule written out."""

from __future__ import annotations

from decimal import Decimal

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.brokers.paper.venue import _per_bps
from ult_actors.messages import Fill, Order, OrderRequest


def expected_price(
    price: Decimal, side: str, qty: Decimal, slippage: Decimal, impact: Decimal, quantum: Decimal
) -> Decimal:
    """The rule as the venue's docstring says it: ``slippage_bps + size_impact_bps_per_share
    * qty`` worse than the price, on the price's increment."""
    slip = price * (slippage + impact * qty) / Decimal(10_000)
    worse = (price + slip if side == "buy" else price - slip).quantize(quantum)
    return max(quantum, worse)


def fill_one(
    setup: PaperSettings, price: Decimal, side: str, qty: Decimal, limit: Decimal | None
) -> tuple[Order, Decimal, list[Fill]]:
    """Submit one order at ``price``; the order after it, the price the feed put it at,
    and its fills."""

    async def run() -> tuple[Order, Decimal, list[Fill]]:
        connector = PaperConnector("paper", setup)
        await connector.connect()
        try:
            venue = connector.venue
            venue.set_price("AAPL", price)
            request = OrderRequest(
                symbol="AAPL", side=side, qty=qty, client_order_id="c-1",  # type: ignore[arg-type]
                type="market" if limit is None else "limit", limit_price=limit,
                time_in_force="day" if limit is None else "gtc",
            )  # fmt: skip
            order = venue.submit(request)
            return order, venue.feed.price("AAPL"), venue.fills(order.id)
        finally:
            await connector.disconnect()

    return trio.run(run)


@settings(max_examples=200, deadline=None)
@given(
    price=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10) ** 7, places=4),
    qty=st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal(10) ** 6, places=9),
    side=st.sampled_from(("buy", "sell")),
    slippage=st.decimals(min_value=Decimal(0), max_value=Decimal(500), places=6),
    # Up to 34 digits: a product with it rounds to the context's 28.
    impact=st.decimals(min_value=Decimal(0), max_value=Decimal(10), places=33),
    decimals=st.integers(min_value=0, max_value=10),
    limit_off=st.one_of(st.none(), st.decimals(min_value=Decimal(-5), max_value=Decimal(5), places=2)),
)
def test_a_fill_is_priced_digit_for_digit_as_the_rule_says(
    price: Decimal,
    qty: Decimal,
    side: str,
    slippage: Decimal,
    impact: Decimal,
    decimals: int,
    limit_off: Decimal | None,
) -> None:
    setup = PaperSettings(
        state_path=":memory:", starting_cash=Decimal(10) ** 14, tick_interval_s=0,
        slippage_bps=slippage, size_impact_bps_per_share=impact, price_decimals=decimals,
        displayed_size=Decimal(0),
    )  # fmt: skip
    limit = None if limit_off is None else max(Decimal("0.01"), price + limit_off)
    order, at, fills = fill_one(setup, price, side, qty, limit)
    want = expected_price(at, side, qty, slippage, impact, Decimal(1).scaleb(-decimals))
    if limit is not None:
        # Slippage never trades through the limit; a limit not reached does not fill.
        marketable = at <= limit if side == "buy" else at >= limit
        if not marketable:
            assert order.status == "accepted"
            return
        want = min(want, limit) if side == "buy" else max(want, limit)
    assert order.status == "filled"
    assert [str(fill.price) for fill in fills] == [str(want)]
    # The order's figures as a fill onto nothing filled works them out, digit for digit.
    zero = Decimal(0)
    assert str(order.filled_qty) == str(zero + qty)
    assert str(order.avg_fill_price) == str((zero * zero + want * qty) / (zero + qty))


def long_decimals(max_digits: int) -> st.SearchStrategy[Decimal]:
    """Non-negative decimals of up to ``max_digits`` digits, at any scale up to 12 places."""
    return st.builds(
        lambda coefficient, places: Decimal(coefficient).scaleb(-places),
        st.integers(min_value=0, max_value=10**max_digits - 1),
        st.integers(min_value=0, max_value=12),
    )


@settings(max_examples=500, deadline=None)
@given(
    price=long_decimals(20),
    qty=long_decimals(21),
    slippage=long_decimals(34),
    impact=long_decimals(34),
)
def test_the_slip_is_the_rules_figure_before_any_rounding_to_the_increment(
    price: Decimal, qty: Decimal, slippage: Decimal, impact: Decimal
) -> None:
    # The venue keeps the two settings divided by 10,000 (``_per_bps``) and leaves the
    # division out per fill: the same value as the rule's, rounded the same way, for
    # settings longer than the context's 28 digits too.
    rule = price * (slippage + impact * qty) / Decimal(10_000)
    assert price * (_per_bps(slippage) + _per_bps(impact) * qty) == rule


@settings(max_examples=60, deadline=None)
@given(
    fills=st.lists(
        st.tuples(
            st.sampled_from(("buy", "sell")),
            # Equal sizes written otherwise ("2", "2.0") and sizes that differ.
            st.sampled_from(("1", "1.0", "2", "2.00", "7", "350")),
            st.booleans(),  # whether the price moves (a tick) before this order
        ),
        min_size=2,
        max_size=12,
    ),
    impact=st.sampled_from((Decimal(0), Decimal("0.001"), Decimal("0.37"))),
)
def test_orders_one_after_another_each_fill_at_the_rules_price_for_their_size_and_side(
    fills: list[tuple[str, str, bool]], impact: Decimal
) -> None:
    # The venue keeps the last fill's price for the next order of the same size and side
    # at the same price (``_fill_price``): each fill's price is still its own rule's.
    setup = PaperSettings(
        state_path=":memory:", starting_cash=Decimal(10) ** 14, tick_interval_s=0,
        slippage_bps=Decimal("1.5"), size_impact_bps_per_share=impact, price_decimals=4,
    )  # fmt: skip

    async def run() -> None:
        connector = PaperConnector("paper", setup)
        await connector.connect()
        try:
            venue = connector.venue
            venue.set_price("AAPL", Decimal("187.1234"))
            for i, (side, qty, moves) in enumerate(fills):
                if moves:
                    venue.tick()
                at = venue.feed.price("AAPL")
                request = OrderRequest(
                    symbol="AAPL", side=side, qty=Decimal(qty),  # type: ignore[arg-type]
                    client_order_id=f"c-{i}",
                )  # fmt: skip
                order = venue.submit(request)
                want = expected_price(
                    at, side, Decimal(qty), Decimal("1.5"), impact, Decimal("0.0001")
                )
                assert [str(f.price) for f in venue.fills(order.id)] == [str(want)]
        finally:
            await connector.disconnect()

    trio.run(run)


@settings(max_examples=150, deadline=None)
@given(
    # Validated quantities: plain digits, up to 9 places, whole numbers among them.
    qty=st.builds(
        lambda coefficient, places: Decimal(coefficient).scaleb(-places),
        st.integers(min_value=1, max_value=10**6),
        st.integers(min_value=0, max_value=9),
    ),
    side=st.sampled_from(("buy", "sell")),
    # Plain, long, zero written with places, and with a positive exponent: only the plain
    # ones let the venue keep the fill's commission as the order's (``_commission_plain``).
    commission=st.sampled_from(
        ("0.005", "0", "0.0000", "2", "1E+1", "0.00000000001234567", "123456.78901")
    ),
    kind=st.sampled_from(("market", "limit", "stop")),
    tif=st.sampled_from(("day", "gtc", "ioc", "fok")),
)
def test_a_new_order_filled_whole_on_arrival_has_its_rules_figures_and_times(
    qty: Decimal, side: str, commission: str, kind: str, tif: str
) -> None:
    # A market or marketable limit order filled whole on arrival is built once, filled
    # (``PaperVenue._fill_new``); a stop triggered on arrival goes the general way. Both:
    # the fill's commission ``commission_per_share * qty``, the order's ``0 +`` it, the
    # filled quantity ``0 + qty``, accepted at the first clock read, filled at the second.
    per_share = Decimal(commission)
    setup = PaperSettings(
        state_path=":memory:", starting_cash=Decimal(10) ** 14, tick_interval_s=0,
        commission_per_share=per_share, displayed_size=Decimal(0),
    )  # fmt: skip
    reads: list[int] = []

    def now_ns() -> int:
        reads.append(1_700_000_000_000_000_000 + 1000 * len(reads))
        return reads[-1]

    async def run() -> None:
        connector = PaperConnector("paper", setup, now_ns=now_ns)
        await connector.connect()
        try:
            venue = connector.venue
            venue.set_price("AAPL", Decimal("100"))
            # A limit above (a buy's) or below (a sell's) the price, a stop already reached.
            away = Decimal(5) if side == "buy" else Decimal(-5)
            request = OrderRequest(
                symbol="AAPL", side=side, qty=qty, client_order_id="c-1",  # type: ignore[arg-type]
                type=kind, time_in_force=tif if kind != "stop" else "day",  # type: ignore[arg-type]
                limit_price=Decimal(100) + away if kind == "limit" else None,
                stop_price=Decimal(100) - away if kind == "stop" else None,
            )  # fmt: skip
            first = len(reads)
            order = venue.submit(request)
            fills = venue.fills(order.id)
            working = venue._unfiled.order(order.id)
            assert working is not None
        finally:
            await connector.disconnect()
        zero = Decimal(0)
        (fill,) = fills
        assert order.status == "filled"
        assert str(order.filled_qty) == str(zero + qty)
        assert order.qty is qty
        assert str(fill.commission) == str(per_share * qty)
        assert str(working.commission) == str(zero + per_share * qty)
        assert (order.created_at, order.updated_at, fill.ts) == (
            reads[first], reads[first + 1], reads[first + 1],
        )  # fmt: skip
        assert (fill.order_id, fill.client_order_id, fill.symbol, fill.side, fill.qty) == (
            order.id, "c-1", "AAPL", side, qty,
        )  # fmt: skip

    trio.run(run)
