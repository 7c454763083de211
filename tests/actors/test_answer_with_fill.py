"""An order the paper venue fills within its submit is one update: its state with its fill.

The broker actor tracks the answer and the execution together (one journal
record, one event, one fold in risk and positions) instead of the answer and
then the fill from the stream. Fills after the answer still come from the stream.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.actors.harness import (
    exact_paper_settings,
    paper_lists_service,
    paper_service,
    settle,
    submit,
)
from ult_actors.actors.journal import JournalSlot
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.errors import Timeout
from ult_actors.messages import Event, Order, OrderRequest, OrderUpdate, Submit
from ult_actors.runtime import Subscription

EVERYTHING = frozenset({"orders", "fills"})


async def _next(events: Subscription[Event]) -> OrderUpdate:
    with trio.fail_after(10):
        while True:
            event = await events.receive()
            if isinstance(event, OrderUpdate):
                return event


def _shape(event: OrderUpdate) -> tuple[str, str, Decimal, Decimal | None, bool]:
    order = event.order
    fill = event.fill.qty if event.fill is not None else None
    return (order.client_order_id, order.status, order.filled_qty, fill, event.fill_only)


async def test_orders_filled_at_once_are_one_event_each_and_the_books_add_up(
    tmp_path: Path,
) -> None:
    async with paper_service(tmp_path) as (svc, made):
        events = svc.gateway.subscribe(EVERYTHING, capacity=256)
        sides = ["buy", "buy", "sell", "buy", "sell", "buy"]
        placed = [await submit(svc, side=side, qty=3) for side in sides]
        # A limit that rests, then fills on a later match: that fill comes from the stream.
        resting = await submit(svc, qty=2, limit_price=90)
        assert resting.status == "accepted"

        seen = [_shape(await _next(events)) for _ in range(len(placed) + 1)]
        assert seen == [
            (o.client_order_id, "filled", Decimal(3), Decimal(3), False) for o in placed
        ] + [(resting.client_order_id, "accepted", Decimal(0), None, False)]
        await settle()
        assert events.drain() == []  # no second word of any fill

        # Risk and positions counted each fill once; only the resting order is open.
        net = Decimal(3) * (sides.count("buy") - sides.count("sell"))
        assert svc.risk_state.books[("paper", "AAPL")].qty == net
        assert svc.book.holdings[("paper", "AAPL")].qty == net
        assert set(svc.risk_state.open_orders) == {resting.client_order_id}
        assert svc.risk_state.open_qty[("paper", "AAPL", "buy")] == 2

        [connector] = made["paper"]
        connector.set_price("AAPL", Decimal(89))
        assert _shape(await _next(events)) == (
            resting.client_order_id,
            "filled",
            Decimal(2),
            Decimal(2),
            False,
        )
        await settle()
        assert svc.risk_state.open_orders == {}
        assert not svc.risk_state.open_qty.get(("paper", "AAPL", "buy"))
        assert svc.book.holdings[("paper", "AAPL")].qty == net + 2
        journal = await svc.journal.get()
        for order in placed:
            recorded = await journal.get(order.client_order_id)
            assert recorded is not None and recorded.status == "filled"


async def test_a_partial_fill_within_the_submit_comes_with_it_and_later_ones_after(
    tmp_path: Path,
) -> None:
    # Four shown at a time: 4 fill within the submit, the rest on later matches.
    paper = exact_paper_settings(displayed_size=Decimal(4))
    async with paper_service(tmp_path, paper=paper) as (svc, made):
        events = svc.gateway.subscribe(EVERYTHING, capacity=256)
        order = await submit(svc, qty=10)
        coid = order.client_order_id
        assert (order.status, order.filled_qty) == ("partially_filled", 4)
        assert _shape(await _next(events)) == (coid, "partially_filled", 4, 4, False)
        await settle()
        assert svc.risk_state.open_qty[("paper", "AAPL", "buy")] == 6
        assert svc.book.holdings[("paper", "AAPL")].qty == 4

        [connector] = made["paper"]
        connector.set_price("AAPL", Decimal(100))
        connector.set_price("AAPL", Decimal(100))
        assert _shape(await _next(events)) == (coid, "partially_filled", 8, 4, False)
        assert _shape(await _next(events)) == (coid, "filled", 10, 2, False)

        # An immediate-or-cancel order fills what is shown, then ends: both, in order.
        ioc = await submit(svc, qty=10, limit_price=100, time_in_force="ioc")
        assert (ioc.status, ioc.filled_qty) == ("canceled", 4)
        first, last = await _next(events), await _next(events)
        assert _shape(first) == (ioc.client_order_id, "partially_filled", 4, 4, False)
        assert _shape(last) == (ioc.client_order_id, "canceled", 4, None, False)
        await settle()
        assert events.drain() == []
        assert svc.book.holdings[("paper", "AAPL")].qty == 14
        assert svc.risk_state.books[("paper", "AAPL")].qty == 14
        assert svc.risk_state.open_orders == {}


class _JournalAway(PaperConnector):
    """The journal goes away (its actor restarting) just as the venue answers a submit."""

    slot: JournalSlot
    away = trio.Event()

    async def submit(self, request: OrderRequest) -> Order:
        order = await super().submit(request)
        self.slot.set(None)
        self.away.set()
        return order


async def test_news_the_answer_could_not_take_in_come_from_the_stream(tmp_path: Path) -> None:
    _JournalAway.away = trio.Event()
    async with paper_lists_service(tmp_path, lambda s: _JournalAway("paper", s)) as svc:
        _JournalAway.slot = svc.journal
        store = await svc.journal.get()
        fills = svc.gateway.subscribe(frozenset({"fills"}), capacity=64)
        # The client's deadline passes while the answer waits for the journal: that
        # ends the submit's step (a client's own cancel does not: the step is shielded).
        # Its own deadline, not the service's 30 s default, keeps the test short; the
        # order reaches the venue within milliseconds of it, long before it passes.
        deadline_ns = time.time_ns() + 3 * 10**9  # the service's clock (build_service's)
        request = OrderRequest(
            symbol="AAPL",
            side="buy",
            qty=Decimal(1),
            client_order_id="c-1",
            deadline_ns=deadline_ns,
        )

        async def client() -> None:
            with pytest.raises(Timeout):  # told so, at its deadline
                await svc.gateway.handle(Submit(id=1, order=request))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            with trio.fail_after(10):
                await _JournalAway.away.wait()
        svc.journal.set(store)  # back

        event = await _next(fills)
        assert event.fill is not None and event.fill.client_order_id == "c-1"
        assert event.order.status == "filled"
        await settle()
        assert fills.drain() == []  # once
        assert (await store.get("c-1")).status == "filled"  # type: ignore[union-attr]
