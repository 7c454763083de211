"""ib_async's own bracket and modify, against the TWS simulator.

``IB.bracketOrder`` builds IB's bracket sample (entry and take-profit with
``transmit`` off, the stop-loss transmitting all three); ``IB.placeOrder``
with an order already placed is ib_async's modify. ib_async runs its own
asyncio loop in a worker thread; prices move at the simulator from there.
Skipped when ``ib_async`` is not installed (it is in the ``test`` extra).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import trio

from ult_actors.sim.ib import TwsSimulator

ib_async = pytest.importorskip("ib_async")

WAIT_S = 10.0


async def until(condition: Callable[[], bool]) -> None:
    """Until ``condition`` holds (ib_async updates its trades as messages arrive)."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)


def move(sim: TwsSimulator, price: Decimal) -> None:
    trio.from_thread.run(sim.set_price, "AAPL", price)


async def bracket_session(sim: TwsSimulator, entry: Decimal) -> dict[str, Any]:
    ib = ib_async.IB()
    await ib.connectAsync("127.0.0.1", sim.port, clientId=14, timeout=WAIT_S)
    try:
        aapl = ib_async.Stock("AAPL", "SMART", "USD")
        bracket = ib.bracketOrder(
            "BUY",
            10,
            float(entry),
            takeProfitPrice=float(entry + 10),
            stopLossPrice=float(entry - 10),
        )
        parent, take_profit, stop_loss = (ib.placeOrder(aapl, o) for o in bracket)
        await until(lambda: stop_loss.orderStatus.status == "PreSubmitted")
        bracket.takeProfit.lmtPrice = float(entry + 5)
        ib.placeOrder(aapl, bracket.takeProfit)  # ib_async's modify: same order id
        await asyncio.wait_for(ib.reqOpenOrdersAsync(), WAIT_S)  # TWS has read the modify
        move(sim, entry - 1)
        await until(lambda: take_profit.orderStatus.status == "Submitted")
        move(sim, entry - 12)  # through the stop
        await until(lambda: take_profit.orderStatus.status == "Cancelled")
        return {
            "statuses": [t.orderStatus.status for t in (parent, take_profit, stop_loss)],
            "fills": [sum(f.execution.shares for f in t.fills) for t in (parent, stop_loss)],
            "ids": [o.orderId for o in bracket],
        }
    finally:
        ib.disconnect()


async def test_ib_asyncs_bracket_fills_its_entry_then_the_stop_cancels_the_modified_take_profit(
    sim: TwsSimulator,
) -> None:
    entry = sim.exchange.price("AAPL") - 20
    with trio.fail_after(4 * WAIT_S):
        seen = await trio.to_thread.run_sync(asyncio.run, bracket_session(sim, entry))
    assert seen["statuses"] == ["Filled", "Cancelled", "Filled"]
    assert seen["fills"] == [10, 10]
    _, take_profit_id, _ = seen["ids"]
    take_profit = sim.exchange.find(14, take_profit_id)
    assert take_profit is not None and take_profit.order.lmt_price == entry + 5  # modified in place
