"""Subscribers to fills see each execution once, even when the order's state arrived first."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import trio

from tests.actors.harness import paper_service
from ult_actors.messages import OrderReply, OrderRequest, OrderUpdate, Submit


async def test_a_market_order_on_paper_publishes_its_fill_once(tmp_path: Path) -> None:
    async with paper_service(tmp_path) as (svc, _):
        fills = svc.gateway.subscribe(frozenset({"fills"}), capacity=64)
        reply = await svc.gateway.handle(
            Submit(id=1, order=OrderRequest(symbol="AAPL", side="buy", qty=Decimal(7)))
        )
        assert isinstance(reply, OrderReply) and reply.order.status == "filled"
        with trio.fail_after(5):
            event = await fills.receive()
        assert isinstance(event, OrderUpdate) and event.fill is not None
        assert event.fill.client_order_id == reply.order.client_order_id
        assert event.fill.qty == Decimal(7)
        assert event.order.status == "filled"
        # The next order's fill is the next event: nothing was published twice.
        await svc.gateway.handle(
            Submit(id=2, order=OrderRequest(symbol="AAPL", side="sell", qty=Decimal(2)))
        )
        with trio.fail_after(5):
            second = await fills.receive()
        assert isinstance(second, OrderUpdate) and second.fill is not None
        assert (second.fill.side, second.fill.qty) == ("sell", Decimal(2))
