"""A position report that left the broker before a fill does not undo that fill.

Fills are folded into the book as they are published; a report on its way
meanwhile may predate them. Seen under load: the first report after a start
(no position yet) arrived after the first buy had filled and was taken as
the book, so the book stayed a buy short until a later pull.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import structlog
import trio
import trio.testing

from ult_actors.actors.commands import BrokerCommand
from ult_actors.actors.positions import PositionBook, PositionsDeps, sync_broker
from ult_actors.messages import Event, Order, OrderUpdate, Position, PositionDrift
from ult_actors.runtime import EventBus, Mailbox


def _filled_buy(coid: str, qty: int) -> OrderUpdate:
    order = Order(
        id=f"id-{coid}", client_order_id=coid, broker="paper", symbol="AAPL", side="buy",
        qty=Decimal(qty), type="market", time_in_force="day", status="filled",
        filled_qty=Decimal(qty), avg_fill_price=Decimal(100), updated_at=1,
    )  # fmt: skip
    return OrderUpdate(order=order)


def _report(qty: int) -> list[Position]:
    return [Position(broker="paper", symbol="AAPL", qty=Decimal(qty), avg_entry_price=Decimal(100))]


async def _pull_answered(
    deps: PositionsDeps, mailbox: Mailbox[BrokerCommand], report: list[Position], meanwhile: Any
) -> None:
    """One ``sync_broker``, its query answered with ``report`` after ``meanwhile()`` ran."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sync_broker, deps, "paper", structlog.get_logger())
        query = await mailbox.receive()
        meanwhile()
        assert query.reply is not None
        query.reply.set(report)


async def test_a_report_older_than_a_fill_does_not_undo_it_and_the_next_one_is_taken() -> None:
    bus: EventBus[Event] = EventBus()
    drift = bus.subscribe(lambda e: isinstance(e, PositionDrift))
    mailbox: Mailbox[BrokerCommand] = Mailbox()
    book = PositionBook()
    deps = PositionsDeps(brokers={"paper": mailbox}, bus=bus, book=book)
    # The first report, asked at start, comes back (empty) after a buy of 5 filled.
    await _pull_answered(deps, mailbox, [], lambda: book.apply(_filled_buy("b-1", 5)))
    assert book.qty("paper") == {"AAPL": Decimal(5)}
    assert ("paper", "AAPL") in book.unsettled
    # The next one, with no fill on its way, is taken as it is: the broker held 3 more.
    await _pull_answered(deps, mailbox, _report(8), lambda: None)
    assert book.qty("paper") == {"AAPL": Decimal(8)}
    assert book.unsettled == set()
    assert drift.drain() == []  # not a drift: the book had not seen the start
    # From then on a disagreement is drift again (after a second look).
    for _ in range(2):
        await _pull_answered(deps, mailbox, _report(9), lambda: None)
    assert [e.broker_qty for e in drift.drain() if isinstance(e, PositionDrift)] == [Decimal(9)]
