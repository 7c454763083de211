"""The filled-quantity de-dup: each part of an order's fill is applied once, at its own price."""

import random
from decimal import Decimal as D
from typing import Any

from ult_actors.fills import FillLedger, SharedAdvance
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


def _state(ledger: FillLedger, coids: str) -> list[object]:
    """What a ledger holds of each order, to the digit (``==`` alone ignores exponents)."""
    held = []
    for coid in coids:
        entry = ledger._applied.get(coid)
        figures = None if entry is None else tuple(
            None if x is None else x.as_tuple() for x in entry
        )
        held.append((figures, ledger.is_done(coid)))
    return held


def _digits(delta: tuple[D, D | None] | None) -> object:
    return None if delta is None else tuple(None if x is None else x.as_tuple() for x in delta)


def test_ledgers_sharing_their_advance_end_as_each_advanced_alone() -> None:
    # Risk's and positions' ledgers fold the same reports, mostly from the same entries;
    # sometimes one alone folds a report, or starts an order from a baseline, and finished
    # orders are forgotten (a small ``keep_done``).
    coids = "abcdef"
    for seed in range(60):
        rng = random.Random(seed)
        shared = SharedAdvance()
        a, b = FillLedger(keep_done=3, shared=shared), FillLedger(keep_done=3, shared=shared)
        own_a, own_b = FillLedger(keep_done=3), FillLedger(keep_done=3)
        filled = dict.fromkeys(coids, 0)
        for _ in range(150):
            coid = rng.choice(coids)
            filled[coid] = min(10, filled[coid] + rng.choice((0, 0, 1, 2, 5)))
            status = rng.choice(
                ("accepted", "partially_filled", "filled", "canceled", "lost", "rejected")
            )
            report = order(
                coid,
                id=rng.choice(("o1", "o1", "")),
                status=status,
                filled_qty=D(filled[coid]).scaleb(rng.choice((0, 0, -1))),
                avg_fill_price=rng.choice((None, D(rng.randint(90, 110)), D("101.25"))),
            )
            roll = rng.random()
            if roll < 0.05:  # one book starts the order from a report
                b.baseline(report)
                own_b.baseline(report)
                continue
            pairs = [(a, own_a), (b, own_b)]
            if roll < 0.15:  # a report only one of them folds
                pairs = [rng.choice(pairs)]
            elif roll < 0.25:  # the other one first
                pairs.reverse()
            for ledger, own in pairs:
                assert _digits(ledger.advance(report)) == _digits(own.advance(report)), seed
                assert _state(ledger, coids) == _state(own, coids), seed


def test_the_second_ledger_takes_the_first_s_result_for_the_same_report() -> None:
    shared = SharedAdvance()
    risk, positions = FillLedger(shared=shared), FillLedger(shared=shared)
    report = order(status="filled", filled_qty=D(10), avg_fill_price=D("187.12"))
    new = risk.advance(report)
    assert positions.advance(report) is new  # the same tuple: not worked out again
    assert positions._applied["c1"] is risk._applied["c1"] and positions.is_done("c1")
    # A report one ledger already holds gives that one nothing, the other what is new.
    assert risk.advance(report) is None
    other = FillLedger(shared=shared)
    assert other.advance(report) == (D(10), D("187.12"))
