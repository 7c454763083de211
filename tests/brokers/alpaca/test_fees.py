"""Joining Alpaca's fee activities to the executions they charged."""

from __future__ import annotations

from decimal import Decimal

from ult_actors.brokers.alpaca.fees import FeeJoin
from ult_actors.brokers.alpaca.wire import WireFeeActivity
from ult_actors.messages import Fill, Order, OrderUpdate, Side


def _execution(fill_id: str, side: Side, qty: str, price: str) -> OrderUpdate:
    order = Order(
        id=f"o-{fill_id}", client_order_id=f"c-{fill_id}", broker="alpaca", symbol="AAPL",
        side=side, qty=Decimal(qty), type="market", time_in_force="day", status="filled",
        filled_qty=Decimal(qty), avg_fill_price=Decimal(price),
    )  # fmt: skip
    fill = Fill(
        fill_id=fill_id, order_id=order.id, client_order_id=order.client_order_id,
        broker="alpaca", symbol="AAPL", side=side, qty=Decimal(qty), price=Decimal(price),
    )  # fmt: skip
    return OrderUpdate(order=order, fill=fill)


def _fee(activity_id: str, description: str, amount: str, qty: str, price: str) -> WireFeeActivity:
    return WireFeeActivity(
        id=activity_id, activity_type="FEE", net_amount=-Decimal(amount),
        description=description, symbol="AAPL", qty=Decimal(qty), price=Decimal(price),
    )  # fmt: skip


def test_a_fee_joins_the_oldest_sale_it_fits_once_per_name() -> None:
    join = FeeJoin()
    for update in (
        _execution("buy-1", "buy", "10", "190"),  # a buy pays no regulatory fee
        _execution("sell-1", "sell", "10", "190"),
        _execution("sell-2", "sell", "10", "190"),
    ):
        join.saw(update)
    first = join.join(_fee("a1", "REG fee for the sale", "0.06", "10", "190"), ts=5)
    second = join.join(_fee("a2", "REG fee for the sale", "0.06", "10", "190"), ts=6)
    taf = join.join(_fee("a3", "TAF fee for the sale", "0.01", "10", "190"), ts=7)
    assert first is not None and second is not None and taf is not None
    assert first.fill is not None and second.fill is not None and taf.fill is not None
    assert (first.fill.fee_of, second.fill.fee_of, taf.fill.fee_of) == (
        "sell-1",
        "sell-2",
        "sell-1",
    )
    assert first.fill_only and first.order.client_order_id == "c-sell-1"
    assert (first.fill.qty, first.fill.fees, first.fill.fee_currency) == (
        Decimal(0),
        {"sec": Decimal("0.06")},
        "USD",
    )
    assert taf.fill.fees == {"finra_taf": Decimal("0.01")}
    # Read again (polls overlap): nothing twice. A third REG fee fits no sale left.
    assert join.join(_fee("a1", "REG fee for the sale", "0.06", "10", "190"), ts=8) is None
    assert join.join(_fee("a4", "REG fee for the sale", "0.06", "10", "190"), ts=9) is None


def test_a_fee_of_an_execution_never_seen_here_is_not_joined() -> None:
    join = FeeJoin()
    join.saw(_execution("sell-1", "sell", "10", "190"))
    assert join.join(_fee("a1", "REG fee for the sale", "0.06", "5", "190"), ts=1) is None
