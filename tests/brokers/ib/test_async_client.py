"""``ib_async`` (the community TWS client) against the TWS simulator at server version 178.

The first calls nearly every ib_async program makes: ``qualifyContracts``
(contract details), ``reqTickers`` (market data snapshots), then an order
whose fill carries a commission report. ib_async runs its own asyncio loop,
so it runs in a worker thread beside the trio simulator. Skipped when
``ib_async`` is not installed (it is in the ``test`` extra).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import trio

from ult_actors.sim.ib import TwsSimulator

ib_async = pytest.importorskip("ib_async")

WAIT_S = 10.0


async def _session(port: int) -> dict[str, Any]:
    ib = ib_async.IB()
    await ib.connectAsync("127.0.0.1", port, clientId=12, timeout=WAIT_S)
    try:
        aapl = ib_async.Stock("AAPL", "SMART", "USD")
        eurusd = ib_async.Forex("EURUSD")
        unknown = ib_async.Forex("EURXYZ")
        qualified = await asyncio.wait_for(ib.qualifyContractsAsync(aapl, eurusd, unknown), WAIT_S)
        tickers = await asyncio.wait_for(ib.reqTickersAsync(aapl, eurusd), WAIT_S)
        trade = ib.placeOrder(eurusd, ib_async.MarketOrder("BUY", 20000))
        async with asyncio.timeout(WAIT_S):
            while not (trade.fills and trade.fills[0].commissionReport.execId):
                await asyncio.sleep(0.02)
        return {
            "version": ib.client.serverVersion(),
            "qualified": qualified,
            "quotes": [(t.bid, t.ask, t.last) for t in tickers],
            "status": trade.orderStatus.status,
            "commission": trade.fills[0].commissionReport.commission,
        }
    finally:
        ib.disconnect()


async def test_ib_async_qualifies_quotes_and_trades_stocks_and_fx() -> None:
    sim = TwsSimulator(tick_interval_s=None)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        with trio.fail_after(4 * WAIT_S):
            seen = await trio.to_thread.run_sync(asyncio.run, _session(port))
        nursery.cancel_scope.cancel()
    assert seen["version"] == 178  # the highest ib_async offers: the size-rule era layout
    aapl, eurusd, unknown = seen["qualified"]
    assert aapl.conId > 0 and aapl.primaryExchange == "NASDAQ" and aapl.localSymbol == "AAPL"
    assert eurusd.conId > 0 and eurusd.secType == "CASH" and eurusd.localSymbol == "EUR.USD"
    assert eurusd.exchange == "IDEALPRO"
    assert unknown is None  # IB's error 200, not a hang
    (stock_bid, stock_ask, stock_last), (fx_bid, fx_ask, fx_last) = seen["quotes"]
    assert 0 < stock_bid < stock_last < stock_ask
    assert 1.08 < fx_bid < fx_ask < 1.09 and math.isnan(fx_last)  # IDEALPRO has no last
    assert seen["status"] == "Filled"
    assert seen["commission"] == 2.0  # IB fixed FX: 0.2 bp of the value, at least $2
