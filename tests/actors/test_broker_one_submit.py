"""A client order id sent twice at once is placed once: the second submit waits for the first.

The real paper broker, its submits held at a gate: the same order goes in
twice while the first submit of it waits at the venue. Once the gate opens,
both callers are answered with the one order the venue placed.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import trio
import trio.testing

from tests.actors.test_broker_lanes import SlowPaper, jammed_service, state
from ult_actors.actors.commands import QueryPositions
from ult_actors.messages import OrderReply, OrderRequest, Submit
from ult_actors.runtime import call

__all__ = ["state"]  # the fixture, used by name


async def test_the_same_order_sent_twice_at_once_is_placed_once(state: Path) -> None:
    async with jammed_service(state) as (svc, _client):
        answers: list[OrderReply] = []
        request = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="twice-1")

        async def send(i: int) -> None:
            reply = await svc.gateway.handle(Submit(id=i, order=request))
            assert isinstance(reply, OrderReply)
            answers.append(reply)

        SlowPaper.gate = trio.Event()
        broker = svc.brokers["paper"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, 1)
            nursery.start_soon(send, 2)
            with trio.fail_after(10):
                while len(broker.in_flight) < 2:  # both taken by the broker actor
                    await trio.testing.wait_all_tasks_blocked()
            SlowPaper.gate.set()
        assert len(answers) == 2
        assert answers[0].order.id and answers[0].order.id == answers[1].order.id
        assert answers[0].order.client_order_id == answers[1].order.client_order_id == "twice-1"
        held = await call(svc.brokers["paper"], QueryPositions(), timeout=5.0, answer=list)
        assert [(p.symbol, p.qty) for p in held] == [("AAPL", Decimal(1))]  # one placed
