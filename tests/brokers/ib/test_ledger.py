"""The IB execution ledger: where a reconnect's request for executions starts."""

from __future__ import annotations

from decimal import Decimal

from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.ledger import ExecutionLedger


def _execution(n: int) -> wire.ExecDetails:
    return wire.ExecDetails(
        req_id=-1, order_id=n, contract=wire.Contract(symbol="AAPL"), exec_id=f"e.{n}",
        time="20261205  10:00:00", account="DU1", exchange="ISLAND", side="BOT",
        shares=Decimal(1), price=Decimal(100),
    )  # fmt: skip


def test_a_reconnect_asks_from_the_gap_until_the_ledger_had_to_forget_an_execution() -> None:
    ledger = ExecutionLedger()
    ledger.last_heard_ns = 123
    assert ledger.gap_began_ns() is None  # the first connect: the day's
    ledger.connected_before = True
    for n in range(ledger.heard.limit):
        ledger.hear(_execution(n))
    assert ledger.gap_began_ns() == 123
    ledger.hear(_execution(0))  # heard again: nothing forgotten
    assert ledger.gap_began_ns() == 123
    ledger.hear(_execution(ledger.heard.limit))
    # The book can no longer be rebuilt from memory alone: the day's again.
    assert ledger.gap_began_ns() is None
