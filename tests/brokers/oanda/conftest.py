"""Fixtures of the Oanda tests: the contract battery's case on the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.brokers.contract import ContractCase
from tests.brokers.oanda.harness import connected, running_sim
from ult_actors.messages import Order
from ult_actors.sim.oanda.server import OandaSimulator

#: The simulated account's commission (core pricing), in USD per 100,000 units.
COMMISSION_PER_100K = Decimal(50)
CENT = Decimal("0.0001")


@pytest.fixture
async def contract_case() -> AsyncIterator[ContractCase]:
    sim_running = running_sim(commission_per_100k=COMMISSION_PER_100K)
    async with sim_running as sim, connected(sim) as (connector, log):
        yield ContractCase(
            connector=connector,
            updates=log,
            symbol="EUR_USD",
            qty=Decimal("1000"),
            resting_buy_limit=Decimal("0.95000"),
            resting_buy_stop=Decimal("1.25000"),
            # day maps to v20's GFD, gtc to GTC: both rest.
            resting_tifs=("day", "gtc"),
            id_prefix="oanda-ct",
            # 1.085: few enough decimals that the battery's multiples stay within five.
            market_price=sim.feed.quote("EUR_USD").mid.normalize(),
            move_price=lambda price: _move(sim, price),
            partial_fill=lambda order, qty: _fill_part(sim, order, qty),
            fees_of=lambda fill: (fill.qty * COMMISSION_PER_100K / 100_000).quantize(CENT),
            quote_now=lambda: sim.feed.quote("EUR_USD").mid,
        )


async def _move(sim: OandaSimulator, mid: Decimal) -> None:
    sim.set_price("EUR_USD", f"{mid:.5f}")


async def _fill_part(sim: OandaSimulator, order: Order, qty: Decimal) -> None:
    """Quote the order's own limit price with only ``qty`` units offered, then go back."""
    price = order.limit_price or order.stop_price
    assert price is not None
    before = sim.feed.quote(order.symbol)
    sim.set_price(order.symbol, {"bid": f"{price:f}", "ask": f"{price:f}", "liquidity": f"{qty}"})
    sim.set_price(order.symbol, {"bid": f"{before.bid}", "ask": f"{before.ask}"})
