"""Fixtures of the Alpaca tests: the contract battery's case on the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.brokers.alpaca.harness import connected, running_sim
from tests.brokers.contract import ContractCase
from ult_actors.messages import Order


@pytest.fixture
async def contract_case() -> AsyncIterator[ContractCase]:
    # Fee activities read every 20 ms, so the fees battery hears them soon after a sale.
    async with running_sim() as (sim, port), connected(port, fee_poll_s=0.02) as (connector, log):

        async def move_price(price: Decimal) -> None:
            sim.venue.set_price("AAPL", price)

        async def partial_fill(order: Order, qty: Decimal) -> None:
            sim.venue.execute(order.id, qty)

        yield ContractCase(
            connector=connector,
            updates=log,
            symbol="AAPL",
            qty=Decimal("3"),
            resting_buy_limit=Decimal("150.00"),
            resting_buy_stop=Decimal("250.00"),
            id_prefix="alpaca-ct",
            market_price=sim.venue.price("AAPL"),
            move_price=move_price,
            partial_fill=partial_fill,
            fees_of=lambda fill: (
                sum(sim.venue.sale_fees.of(fill.qty, fill.price).values(), Decimal(0))
                if fill.side == "sell"
                else Decimal(0)
            ),
            quote_now=lambda: sim.venue.price("AAPL"),
        )
