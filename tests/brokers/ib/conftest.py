"""Fixtures of the IB tests: the TWS simulator, and the contract battery's case on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.brokers.contract import ContractCase
from tests.brokers.ib.harness import running_sim, streaming_connector
from ult_actors.messages import Order
from ult_actors.sim.ib import TwsSimulator
from ult_actors.sim.ib.instruments import commission, stock


@pytest.fixture
async def sim() -> AsyncIterator[TwsSimulator]:
    """A simulator on an ephemeral loopback port, without market ticks."""
    async with running_sim() as server:
        yield server


@pytest.fixture
async def contract_case() -> AsyncIterator[ContractCase]:
    async with running_sim() as sim, streaming_connector(sim) as (connector, log):

        async def move_price(price: Decimal) -> None:
            await sim.set_price("AAPL", price)

        async def partial_fill(order: Order, qty: Decimal) -> None:
            await sim.execute(connector.settings.client_id, int(order.id), qty)

        yield ContractCase(
            connector=connector,
            updates=log,
            symbol="AAPL",
            qty=Decimal(10),
            resting_buy_limit=Decimal("1.00"),
            resting_buy_stop=Decimal(100_000),
            resting_tifs=("day", "gtc"),
            id_prefix="ib",
            market_price=sim.exchange.price("AAPL"),
            move_price=move_price,
            partial_fill=partial_fill,
            fees_of=lambda fill: commission(stock(fill.symbol), fill.qty, fill.qty * fill.price),
            quote_now=lambda: sum(sim.exchange.quote("AAPL"), Decimal(0)) / 2,
        )
