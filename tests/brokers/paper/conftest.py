"""Fixtures of the paper tests: the contract battery's case, in each of the venue's matching modes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.brokers.contract import ContractCase, UpdateLog
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.messages import Order

# inline: matched inside submit (the default); delayed: acknowledged at once,
# matched 5 ms later by the stream task, with the price clock running.
MODES = {
    "inline": PaperSettings(tick_interval_s=0),
    "delayed": PaperSettings(latency_ms=5, tick_interval_s=0.01),
}


@pytest.fixture(params=sorted(MODES))
async def contract_case(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ContractCase]:
    settings = MODES[request.param]
    settings = PaperSettings(
        **{
            **{f: getattr(settings, f) for f in settings.__struct_fields__},
            "state_path": str(tmp_path / "paper.db"),
        }
    )
    connector = PaperConnector("paper", settings)
    await connector.connect()
    log = UpdateLog()

    async def move_price(price: Decimal) -> None:
        connector.set_price("AAPL", price)

    async def partial_fill(order: Order, qty: Decimal) -> None:
        connector.execute(order.id, qty)

    async with trio.open_nursery() as nursery:
        await nursery.start(connector.stream_updates, log.sink)
        yield ContractCase(
            connector=connector,
            updates=log,
            symbol="AAPL",
            qty=Decimal(10),
            resting_buy_limit=Decimal(50),
            resting_buy_stop=Decimal(250),  # AAPL starts at 190
            id_prefix=f"paper-{request.param}",
            market_price=connector.price("AAPL"),
            move_price=move_price,
            partial_fill=partial_fill,
            fees_of=lambda fill: fill.qty * settings.commission_per_share,
        )
        nursery.cancel_scope.cancel()
    await connector.disconnect()
