"""Two reports of one order the journal lacks, merged in turn however they interleave.

Alpaca's "close all positions" makes the closing orders itself: the reply naming
them (``accepted``) and the stream's news of their fills race, and both are
reports of an order the journal does not know yet. The one that looked the order
up first must not put its older state over the newer one that came meanwhile.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.actors.test_service import config, running
from tests.fakes import FakeConnector, FakeVenue, StoreWith
from ult_actors.messages import (
    Flatten,
    ListOrders,
    Order,
    OrderReply,
    OrderRequest,
    OrdersReply,
    OrderUpdate,
    Submit,
)
from ult_actors.order_state import order_from_request


class ClosingVenueConnector(FakeConnector):
    """A venue that closes every position with orders of its own making, as Alpaca does."""

    made: list[str] = []

    async def close_all_positions(self) -> list[Order] | None:
        venue = self.venue
        closing = []
        for symbol, qty in list(venue.positions.items()):
            oid = str(next(venue.ids))
            request = OrderRequest(
                symbol=symbol, side="sell", qty=qty, client_order_id=f"venue-made-{oid}"
            )
            order = order_from_request(
                request, broker=self.name, order_id=oid, status="accepted", now_ns=0
            )
            venue.orders[oid] = order
            venue.by_client[f"venue-made-{oid}"] = oid
            self.made.append(oid)
            closing.append(order)
        return closing


async def test_the_close_reply_s_older_state_does_not_undo_the_fill_the_stream_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = FakeVenue()
    ClosingVenueConnector.made = []
    monkeypatch.setattr("tests.actors.test_service.FakeConnector", ClosingVenueConnector)
    async with running(config(tmp_path, "fake"), {"fake": venue}) as svc:
        buy = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(3), client_order_id="buy-1")
        bought = await svc.gateway.handle(Submit(id=1, order=buy, wait=True))
        assert isinstance(bought, OrderReply) and bought.order.status == "filled"

        store = await svc.journal.get()
        real_find = store.find_by_order_id
        fill_applied = svc.bus.subscribe(
            lambda e: isinstance(e, OrderUpdate) and e.order.status == "filled"
            and e.order.id in ClosingVenueConnector.made
        )  # fmt: skip

        async def fill_reported_meanwhile(order_id: str) -> list[Order]:
            # The close's reply looks the order up; meanwhile the venue fills it and the
            # stream's report of the fill is applied first.
            if order_id in ClosingVenueConnector.made and not venue.orders[order_id].filled_qty:
                venue.fill(order_id)
                with trio.fail_after(10):
                    await fill_applied.receive()
            return await real_find(order_id)

        # Through the journal's slot: a compiled store's methods cannot be replaced on it.
        monkeypatch.setattr(
            svc.journal, "_store", StoreWith(store, find_by_order_id=fill_reported_meanwhile)
        )
        with trio.fail_after(10):
            reply = await svc.gateway.handle(Flatten(id=2, broker="fake"))
        assert isinstance(reply, OrdersReply)
        (closing,) = reply.orders
        assert closing.status == "filled"  # not the reply's older "accepted"
        journaled = await store.get(closing.client_order_id)
        assert journaled is not None and journaled.status == "filled"
        still_open = await svc.gateway.handle(ListOrders(id=3, open_only=True))
        assert isinstance(still_open, OrdersReply) and still_open.orders == []
