"""The filled-quantity de-dup: each part of an order's fill is applied once, at its own price."""

from decimal import Decimal as D
from typing import Any

from ult_actors.fills import FillLedger
from ult_actors.messages import Order


def order(coid: str = "c1", **fields: Any) -> Order:
    base: dict[str, Any] = dict(
        id="o1", client_order_id=coid, broker="paper", symbol="AAPL", side="buy",
        qty=D(10), type="market", time_in_force="day", status="partially_filled",
    )
    return Order(**(base | fields))


def test_a_repeated_report_adds_nothing() -> None:
    ledger = FillLedger()
    report = order(filled_qty=D(4), avg_fill_price=D(10))
    assert ledger.advance(report) == (D(4), D(10))
    assert ledger.advance(report) is None
    assert ledger.applied_qty("c1") == D(4)


def test_each_delta_is_priced_by_itself() -> None:
    ledger = FillLedger()
    ledger.advance(order(filled_qty=D(1), avg_fill_price=D(10)))
    delta = ledger.advance(order(filled_qty=D(2), avg_fill_price=D(11)))
    assert delta == (D(1), D(12))


def test_a_report_that_skipped_executions_adds_all_of_them() -> None:
    ledger = FillLedger()
    ledger.advance(order(filled_qty=D(1), avg_fill_price=D(10)))
    delta = ledger.advance(order(status="filled", filled_qty=D(10), avg_fill_price=D(10)))
    assert delta == (D(9), D(10))
    assert ledger.is_done("c1")


def test_a_baseline_counts_as_applied() -> None:
    ledger = FillLedger()
    ledger.baseline(order(filled_qty=D(3), avg_fill_price=D(10)))
    delta = ledger.advance(order(filled_qty=D(5), avg_fill_price=D("11.2")))
    assert delta == (D(2), D(13))


def test_a_local_verdict_is_not_final() -> None:
    ledger = FillLedger()
    ledger.advance(order(status="lost"))
    ledger.advance(order(id="", status="rejected"))
    assert not ledger.is_done("c1")


def test_finished_orders_beyond_keep_done_are_forgotten_with_their_fills() -> None:
    ledger = FillLedger(keep_done=2)
    for coid in ("a", "b", "c"):
        ledger.advance(order(coid, status="filled", filled_qty=D(10), avg_fill_price=D(1)))
    assert [ledger.is_done(c) for c in "abc"] == [False, True, True]
    assert ledger.applied_qty("a") == 0 and ledger.applied_qty("c") == D(10)
    ledger.finish("b")  # refreshed: now "c" is the oldest
    ledger.finish("d")
    assert [ledger.is_done(c) for c in "bcd"] == [True, False, True]
