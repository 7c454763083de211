"""A report too big to list order by order is refused, saying how to narrow it; the
speed benchmark runs end to end on a small journal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bench import report_speed
from ult_actors.errors import BadRequest
from ult_actors.messages import Order, ReportQuery
from ult_actors.report import aggregate, build_report
from ult_actors.report.inputs import OrdersAndFills


def filled(i: int) -> Order:
    return Order(
        id=f"o{i}", client_order_id=f"c{i}", broker="paper", symbol="AAPL", side="buy",
        qty=Decimal(1), type="market", time_in_force="day", status="filled",
        filled_qty=Decimal(1), avg_fill_price=Decimal(10), created_at=i,
    )  # fmt: skip


def test_listing_more_orders_than_a_reply_holds_is_refused_and_says_how_to_narrow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aggregate, "MAX_LISTED_ORDERS", 2)
    orders = [filled(i) for i in range(3)]
    with pytest.raises(BadRequest, match=r"covers 3 orders.*narrow it"):
        build_report(OrdersAndFills(orders, []), ReportQuery(by="order"))
    with pytest.raises(BadRequest):
        build_report(OrdersAndFills(orders, []), ReportQuery(with_orders=True))
    grouped = build_report(OrdersAndFills(orders, []), ReportQuery(by="symbol", with_charts=True))
    assert grouped.total_orders == 3 and grouped.rows[0].orders == 3


def test_the_speed_benchmark_runs_on_a_small_journal() -> None:
    result = report_speed.run(orders=300, repeat=1)
    assert result["ult_report_by_symbol_orders"] == 300
    assert result["ult_report_by_order_last_week_orders"] == 70
