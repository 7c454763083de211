"""What a client hears when the actor holding its request keeps restarting.

A broker actor restarts when its connection drops, as it would after a bug; a
request still in flight after the last redelivery must then be answered as the
outage it is (``broker_unavailable``, safe to ask again), not as ``internal``.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import trio
import trio.testing

from ult_actors.actors.gateway import ServiceGateway
from ult_actors.actors.journal import JournalSlot
from ult_actors.errors import BrokerUnavailable, Internal
from ult_actors.messages import OrderListRequest, OrderRequest, SubmitList
from ult_actors.runtime.actor import ActorContext, serve_mailbox
from ult_actors.runtime.mailbox import Envelope, Mailbox
from ult_actors.runtime.pubsub import EventBus
from ult_actors.runtime.supervisor import Backoff, ChildSpec, Supervisor


class Venue:
    """Takes every request and never answers; ``drop`` fails the connection, or hits a bug."""

    def __init__(self) -> None:
        self.down = trio.Event()
        self.cause: Exception = BrokerUnavailable("connection dropped", broker="sim")
        self.taken = 0

    def drop(self) -> None:
        self.down.set()
        self.down = trio.Event()

    async def start(self, ctx: ActorContext[Any]) -> None:
        down = self.down

        async def held(env: Envelope[Any]) -> None:
            self.taken += 1
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:

            async def connection() -> None:
                await down.wait()
                raise self.cause  # not any request's handler: every request is a bystander

            nursery.start_soon(connection)
            await serve_mailbox(ctx, held)


def oco() -> SubmitList:
    legs = [
        OrderRequest(
            symbol="AAPL", side="sell", qty=Decimal(1), type="limit", limit_price=Decimal(9)
        ),
        OrderRequest(
            symbol="AAPL", side="sell", qty=Decimal(1), type="stop", stop_price=Decimal(1)
        ),
    ]
    return SubmitList(id=1, orders=OrderListRequest(contingency="oco", legs=legs, list_id="l-1"))


async def answer_after_drops(venue: Venue) -> BaseException:
    """The error a list submit gets while ``venue`` drops three times with it in flight."""
    router: Mailbox[Any] = Mailbox(capacity=10)
    sup = Supervisor(
        "root",
        [ChildSpec(id="router", start=venue.start, mailbox=router)],
        backoff=Backoff(initial_s=1.0, cap_s=1.0, multiplier=1.0),
        max_restarts=10,
        rng=random.Random(3),
    )
    gateway = ServiceGateway(
        router=router,
        risk=Mailbox(capacity=1),
        positions=Mailbox(capacity=1),
        brokers={},
        journal=JournalSlot(),
        bus=EventBus(),
        health=None,  # type: ignore[arg-type]
    )
    caught: list[BaseException] = []

    async def ask() -> None:
        try:
            await gateway.handle(oco())
        except Exception as exc:
            caught.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        nursery.start_soon(ask)
        for taken in range(1, 4):
            while venue.taken < taken:  # this incarnation holds the list
                await trio.sleep(0.1)
            venue.drop()
        while not caught:
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    return caught[0]


async def test_a_list_in_flight_across_connection_drops_is_broker_unavailable(
    autojump_clock: Any,
) -> None:
    error = await answer_after_drops(Venue())
    assert isinstance(error, BrokerUnavailable), error
    assert error.transient and error.broker == "sim"
    assert "3 times with this request in flight" in error.message


async def test_a_list_in_flight_across_crashes_from_a_bug_is_internal(
    autojump_clock: Any,
) -> None:
    venue = Venue()
    venue.cause = RuntimeError("a bug")
    error = await answer_after_drops(venue)
    assert isinstance(error, Internal), error
