"""Fixtures of the Alpaca tests: the contract battery's case on the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.brokers.alpaca.harness import connected, running_sim
from tests.brokers.contract import ContractCase


@pytest.fixture
async def contract_case() -> AsyncIterator[ContractCase]:
    async with running_sim() as (_sim, port), connected(port) as (connector, log):
        yield ContractCase(
            connector=connector,
            updates=log,
            symbol="AAPL",
            qty=Decimal("3"),
            resting_buy_limit=Decimal("150.00"),
            resting_buy_stop=Decimal("250.00"),
            id_prefix="alpaca-ct",
        )
