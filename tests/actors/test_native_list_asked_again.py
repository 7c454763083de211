"""A venue's own list asked again decides on the journal as it is after its lookups.

A list asked again whose legs are still ``pending_new`` is looked up at the
venue, twice, a grace apart, before it is sent again. Reconciliation may rule
on the legs meanwhile (not found: never reached the broker). Sending the list
after that verdict would place at the venue a list the journal has ended.
"""

from __future__ import annotations

import time
from decimal import Decimal

import trio

from ult_actors.actors.order_lists import ListSide, place_list
from ult_actors.actors.reconcile import never_arrived
from ult_actors.journal import MemoryStore
from ult_actors.messages import Contingency, Order, OrderListRequest, OrderRequest
from ult_actors.order_state import leg_records


class _NativeBrackets:
    """A venue that carries brackets itself and records every list sent to it."""

    name = "fake"
    native_contingencies: frozenset[Contingency] = frozenset({"bracket"})

    def __init__(self) -> None:
        self.sent: list[OrderListRequest] = []

    async def submit_list(self, request: OrderListRequest) -> list[Order]:
        self.sent.append(request)
        raise AssertionError("a list the journal has ended is not sent")


def _bracket() -> OrderListRequest:
    def leg(coid: str, side: str, **terms: object) -> OrderRequest:
        return OrderRequest(
            symbol="EUR_USD",
            side="buy" if side == "buy" else "sell",
            qty=Decimal(1000),
            client_order_id=coid,
            broker="fake",
            **terms,  # type: ignore[arg-type]
        )

    return OrderListRequest(
        contingency="bracket",
        list_id="again-list",
        broker="fake",
        legs=[
            leg("again", "buy"),
            leg("again-tp", "sell", type="limit", limit_price=Decimal("1.2"), time_in_force="gtc"),
            leg("again-sl", "sell", type="stop", stop_price=Decimal("1.0"), time_in_force="gtc"),
        ],
    )


async def test_a_list_ruled_never_arrived_while_it_was_looked_up_is_not_sent_again() -> None:
    request = _bracket()
    store = MemoryStore()
    records = leg_records(request, "fake", time.time_ns(), emulated=False)
    for record in records:
        await store.record(record, event="submit")  # an earlier ask of it journaled them
    asked = 0

    async def lookup(coid: str) -> Order | None:
        nonlocal asked
        asked += 1
        if asked == 2:  # the running reconciliation rules on the legs while we look
            for record in records:
                await store.record(never_arrived(record, "not found", time.time_ns()))
        return None

    async def unused(*args: object) -> Order:
        raise AssertionError("nothing else is asked of the broker here")

    venue = _NativeBrackets()
    side = ListSide(
        name="fake",
        connector=venue,  # type: ignore[arg-type]
        store=store,
        known=store.get,
        track=unused,
        lookup=lookup,
        now_ns=time.time_ns,
        settle_grace_s=0.0,
        place=unused,
        cancel=unused,
        replace=unused,
        lock=trio.Lock(),
    )
    legs = await place_list(side, request)
    assert venue.sent == []
    assert [(o.client_order_id, o.status) for o in legs] == [
        ("again", "rejected"),
        ("again-tp", "rejected"),
        ("again-sl", "rejected"),
    ]
