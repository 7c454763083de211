"""Flatten when an order listed as open has ended meanwhile: nothing to cancel, not a failure."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import msgspec
import trio

from tests.service_harness import one_broker_config
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.messages import (
    Flatten,
    Order,
    OrderReply,
    OrderRequest,
    OrdersReply,
    Submit,
)
from ult_actors.service import build_service


class LaggingListPaper(PaperConnector):
    """The real paper connector whose open-orders listing still shows ``lagging``."""

    lagging: list[Order] = []

    async def open_orders(self) -> list[Order]:
        return [*LaggingListPaper.lagging, *await super().open_orders()]


async def test_flatten_skips_an_order_that_filled_after_it_was_listed(tmp_path: Path) -> None:
    settings = PaperSettings(tick_interval_s=0, state_path=str(tmp_path / "paper.db"))
    svc = build_service(
        one_broker_config(tmp_path, "paper", settings),
        env={},
        rng=random.Random(5),
        connector_factories={"paper": lambda: LaggingListPaper("paper", settings)},
        reconcile=ReconcilePolicy(interval_s=3600),
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            await nursery.start(svc.run)
            buy = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(2), client_order_id="f-1")
            filled = await svc.gateway.handle(Submit(id=1, order=buy, wait=True))
            assert isinstance(filled, OrderReply) and filled.order.status == "filled"
            LaggingListPaper.lagging = [msgspec.structs.replace(filled.order, status="accepted")]
            done = await svc.gateway.handle(Flatten(id=2, broker="paper"))
            assert isinstance(done, OrdersReply)
            assert "f-1" not in [o.client_order_id for o in done.orders]  # nothing canceled
            # ... and the position is still closed.
            assert [(o.symbol, o.side, o.qty) for o in done.orders] == [("AAPL", "sell", 2)]
        nursery.cancel_scope.cancel()
