"""Fees a venue reports after the execution (a fill of quantity 0) count as fees only."""

from __future__ import annotations

from decimal import Decimal

from ult_actors.messages import Fill, Order, ReportQuery
from ult_actors.report import build_report
from ult_actors.report.inputs import OrdersAndFills

_S = 10**9


def test_a_late_fee_adds_to_fees_and_shortfall_but_not_to_fills_or_fill_times() -> None:
    order = Order(
        id="o-1", client_order_id="c-1", broker="alpaca", symbol="AAPL", side="sell",
        qty=Decimal(10), type="market", time_in_force="day", status="filled",
        filled_qty=Decimal(10), avg_fill_price=Decimal("99"), created_at=0, updated_at=1 * _S,
        arrival_price=Decimal(100), arrival_source="venue_quote",
    )  # fmt: skip
    execution = Fill(
        fill_id="e-1", order_id="o-1", client_order_id="c-1", broker="alpaca", symbol="AAPL",
        side="sell", qty=Decimal(10), price=Decimal("99"), ts=1 * _S,
    )  # fmt: skip
    # Posted an hour later, at the execution's price: a later trade must not be made of it.
    fee = Fill(
        fill_id="a-1", order_id="o-1", client_order_id="c-1", broker="alpaca", symbol="AAPL",
        side="sell", qty=Decimal(0), price=Decimal("99"), ts=3600 * _S,
        fees={"sec": Decimal("0.03")}, fee_currency="USD", fee_of="e-1",
    )  # fmt: skip
    report = build_report(
        OrdersAndFills([order], [execution, fee]), ReportQuery(by="order", with_orders=True)
    )
    cost = report.orders[0]
    assert (cost.filled_qty, cost.avg_fill_price, cost.fees) == (
        Decimal(10),
        Decimal(99),
        Decimal("0.03"),
    )
    assert cost.last_fill_s == 1.0  # the execution's time, not the fee's
    # Sold 1.00 below arrival on 10: impact 10.00, plus the fee.
    assert cost.shortfall == Decimal("10.03")
