"""Resends are journaled: an order's history shows each time it was sent again."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import trio

from tests.durability.harness import config, running
from tests.fakes import FakeVenue
from ult_actors.journal.sqlite import SqliteStore
from ult_actors.messages import OrderReply, OrderRequest, Submit


async def test_each_resend_is_in_the_history_and_the_order_is_sent_once(tmp_path: Path) -> None:
    venue = FakeVenue("fake")
    venue.fail_submits = 2  # refused twice before it is applied
    async with running(config(tmp_path), venue) as svc:
        with trio.fail_after(20):
            reply = await svc.gateway.handle(
                Submit(
                    id=1,
                    order=OrderRequest(
                        symbol="AAPL", side="buy", qty=Decimal(2), client_order_id="re-1"
                    ),
                )
            )
        assert isinstance(reply, OrderReply) and reply.order.status == "filled"
        store = await svc.journal.get()
        assert isinstance(store, SqliteStore)
        history: list[tuple[str, str]] = []
        with trio.fail_after(10):  # the fill is journaled in the background, soon after
            while not history or history[-1] != ("update", "filled"):
                await trio.sleep(0.01)
                history = [(e.event, e.order.status) for e in await store.history("re-1")]
        assert history[:3] == [
            ("submit", "pending_new"),
            ("resend", "pending_new"),
            ("resend", "pending_new"),
        ]
        assert history[-1] == ("update", "filled")
        assert list(venue.by_client) == ["re-1"]
