"""Fixtures of the Oanda tests: the contract battery's case on the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.brokers.contract import ContractCase
from tests.brokers.oanda.harness import connected, running_sim


@pytest.fixture
async def contract_case() -> AsyncIterator[ContractCase]:
    async with running_sim() as sim, connected(sim) as (connector, log):
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
        )
