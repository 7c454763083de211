"""alpaca-py (Alpaca's own SDK) against the Alpaca simulator: its models accept every reply.

alpaca-py validates each reply into pydantic models, so a missing or
mistyped field fails here the way it fails for a user (in the ``test`` extra).
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import trio
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import ClosePositionRequest, MarketOrderRequest
from alpaca.trading.stream import TradingStream

from tests.brokers.alpaca.harness import KEY, SECRET, running_sim

WAIT_S = 10.0


def _until(check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _use_the_sdk(port: int) -> dict[str, Any]:
    client = TradingClient(KEY, SECRET, paper=True, url_override=f"http://127.0.0.1:{port}")
    updates: list[Any] = []

    async def on_update(update: Any) -> None:
        updates.append(update)

    stream = TradingStream(KEY, SECRET, paper=True, url_override=f"ws://127.0.0.1:{port}/stream")
    stream.subscribe_trade_updates(on_update)
    runner = threading.Thread(target=stream.run, daemon=True)
    runner.start()
    try:
        seen: dict[str, Any] = {"asset": client.get_asset("AAPL")}
        buy = MarketOrderRequest(
            symbol="AAPL", notional=500, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
        )
        seen["notional"] = client.submit_order(buy)
        _until(lambda: any(u.event == "fill" for u in updates))
        client.submit_order(
            MarketOrderRequest(
                symbol="MSFT", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
        )
        _until(lambda: len(client.get_all_positions()) == 2)
        seen["half"] = client.close_position("AAPL", ClosePositionRequest(percentage="50"))
        _until(lambda: client.get_order_by_id(seen["half"].id).status == "filled")
        seen["all"] = client.close_all_positions(cancel_orders=True)
        _until(lambda: client.get_all_positions() == [])
        seen["updates"] = list(updates)
        return seen
    finally:
        stream.stop()


async def test_alpaca_py_reads_assets_notional_orders_closes_and_every_trade_update() -> None:
    async with running_sim() as (_sim, port):
        with trio.fail_after(4 * WAIT_S):
            seen = await trio.to_thread.run_sync(_use_the_sdk, port)
    assert seen["asset"].symbol == "AAPL" and seen["asset"].tradable
    assert Decimal(seen["notional"].notional) == 500 and seen["notional"].qty is None
    assert seen["half"].side == OrderSide.SELL
    assert {r.symbol for r in seen["all"]} == {"AAPL", "MSFT"}
    assert all(r.status == 200 for r in seen["all"])
    events = [u.event for u in seen["updates"]]
    assert "new" in events and "fill" in events  # alpaca-py's TradeUpdate needs timestamp on each
    assert all(u.timestamp is not None for u in seen["updates"])
