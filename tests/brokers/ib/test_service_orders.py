"""Replaces and order lists at TWS through the whole service: journal, broker actor,
connector, simulator.

TWS modifies in place (one order id); the service still journals a
replacement under its own client order id, linked both ways, with the fill
before the modify kept on the old order. A modify that TWS reads only after
the order filled is refused naming the state, and the fill is journaled. A
bracket goes to TWS as TWS's own (parent and children), and the journal
follows it: exits held, then working, the take-profit canceled by the stop.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.brokers.ib.harness import BOUND, settings
from ult_actors.client import bracket_request, oco_request
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import NotReplaceable
from ult_actors.messages import (
    OrderReply,
    OrderRequest,
    OrdersReply,
    OrderUpdate,
    Replace,
    ReplaceRequest,
    Submit,
    SubmitList,
)
from ult_actors.service import Service, build_service
from ult_actors.sim.ib import TwsSimulator

CLIENT_ID = 1  # the connector's default API client id


def resting(coid: str, qty: int) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL",
        side="buy",
        qty=Decimal(qty),
        type="limit",
        limit_price=Decimal("5.00"),
        time_in_force="gtc",
        client_order_id=coid,
    )


@asynccontextmanager
async def service(sim: TwsSimulator, state_dir: Path) -> AsyncIterator[Service]:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="ib", state_dir=str(state_dir)),
        brokers=[BrokerEntry(name="ib", kind="ib", enabled=True, settings=settings(sim.port))],
    )
    svc = build_service(cfg, env={}, rng=random.Random(11))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


async def until_update(
    events: trio.MemoryReceiveChannel[object], coid: str, **want: object
) -> None:
    while True:
        event = await events.receive()
        if (
            isinstance(event, OrderUpdate)
            and event.order.client_order_id == coid
            and all(getattr(event.order, k) == v for k, v in want.items())
        ):
            return


async def test_a_replace_through_the_service_keeps_the_partial_fill_and_links_both_orders(
    sim: TwsSimulator, tmp_path: Path
) -> None:
    async with service(sim, tmp_path) as svc:
        events = svc.bus.subscribe()
        with trio.fail_after(BOUND):
            placed = await svc.gateway.handle(Submit(id=1, order=resting("svc-1", 20)))
            assert isinstance(placed, OrderReply)
            await sim.execute(CLIENT_ID, int(placed.order.id), Decimal(5))
            await until_update(events, "svc-1", filled_qty=Decimal(5))
            change = ReplaceRequest(
                order_id="svc-1", limit_price=Decimal("4.00"), client_order_id="svc-2"
            )
            replaced = await svc.gateway.handle(Replace(id=2, change=change))
            assert isinstance(replaced, OrderReply), replaced
            new = replaced.order
            store = await svc.journal.get()
            old = await store.get("svc-1")
            (at_tws,) = sim.exchange.orders.values()
            await sim.execute(CLIENT_ID, at_tws.order_id, Decimal(15))
            await until_update(events, "svc-2", status="filled")
            late = ReplaceRequest(
                order_id="svc-2", limit_price=Decimal("3.00"), client_order_id="svc-3"
            )
            with pytest.raises(NotReplaceable, match="is filled"):
                await svc.gateway.handle(Replace(id=3, change=late))
    assert (new.client_order_id, new.replaces, new.limit_price) == (
        "svc-2",
        "svc-1",
        Decimal("4.00"),
    )
    assert new.id == placed.order.id  # TWS kept its order id
    assert new.qty - new.filled_qty == Decimal(15)
    assert old is not None
    assert (old.status, old.replaced_by, old.filled_qty) == ("replaced", "svc-2", Decimal(5))
    assert (at_tws.order.order_ref, at_tws.order.total_quantity) == ("svc-2", Decimal(20))


async def test_a_modify_tws_reads_after_the_fill_is_refused_and_the_fill_journaled(
    sim: TwsSimulator, tmp_path: Path
) -> None:
    async with service(sim, tmp_path) as svc:
        with trio.fail_after(BOUND):
            placed = await svc.gateway.handle(Submit(id=1, order=resting("race-1", 10)))
            assert isinstance(placed, OrderReply)
            sim.faults.ack_gate = gate = trio.Event()  # TWS has not read the modify yet
            refusals: list[NotReplaceable] = []

            async def replace() -> None:
                change = ReplaceRequest(
                    order_id="race-1", limit_price=Decimal("4.00"), client_order_id="race-2"
                )
                try:
                    await svc.gateway.handle(Replace(id=2, change=change))
                except NotReplaceable as exc:
                    refusals.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(replace)
                await sim.at_gate.wait()  # the modify waits at TWS
                await sim.execute(CLIENT_ID, int(placed.order.id), Decimal(10))  # fills first
                gate.set()
            store = await svc.journal.get()
            old, new = await store.get("race-1"), await store.get("race-2")
    assert len(refusals) == 1 and "filled" in str(refusals[0])
    assert old is not None and (old.status, old.filled_qty) == ("filled", Decimal(10))
    assert new is not None and new.status == "rejected"  # journaled, never working
    assert [o.status for o in sim.exchange.orders.values()] == ["Filled"]


async def test_a_bracket_through_the_service_is_tws_s_own_and_the_journal_follows_it(
    sim: TwsSimulator, tmp_path: Path
) -> None:
    price = sim.exchange.price("AAPL")
    request = bracket_request(
        "AAPL", "buy", 10, take_profit=price + 50, stop_loss=price - 50, list_id="sb"
    )
    async with service(sim, tmp_path) as svc:
        events = svc.bus.subscribe()
        with trio.fail_after(BOUND):
            reply = await svc.gateway.handle(SubmitList(id=1, orders=request))
            assert isinstance(reply, OrdersReply), reply
            entry, take_profit, stop_loss = (o.client_order_id for o in reply.orders)
            await until_update(events, entry, status="filled")
            await sim.set_price("AAPL", price - 60)  # through the stop
            await until_update(events, stop_loss, status="filled")
            await until_update(events, take_profit, status="canceled")
            store = await svc.journal.get()
            journaled = [await store.get(c) for c in (entry, take_profit, stop_loss)]
    at_tws = {o.order.order_ref: o.order.parent_id for o in sim.exchange.orders.values()}
    entry_id = int(reply.orders[0].id)
    assert at_tws == {entry: 0, take_profit: entry_id, stop_loss: entry_id}  # TWS's own bracket
    assert [o.status if o else None for o in journaled] == ["filled", "canceled", "filled"]
    assert all(o is not None and o.leg is not None and not o.leg.emulated for o in journaled)


async def test_an_oco_through_the_service_is_one_tws_oca_group(
    sim: TwsSimulator, tmp_path: Path
) -> None:
    price = sim.exchange.price("AAPL")
    request = oco_request("AAPL", "sell", 10, take_profit=price + 50, stop_loss=price - 50)
    async with service(sim, tmp_path) as svc:
        events = svc.bus.subscribe()
        with trio.fail_after(BOUND):
            bought = OrderRequest(
                symbol="AAPL", side="buy", qty=Decimal(10), client_order_id="so-0"
            )
            await svc.gateway.handle(Submit(id=1, order=bought, wait=True))
            reply = await svc.gateway.handle(SubmitList(id=2, orders=request))
            assert isinstance(reply, OrdersReply), reply
            take_profit, stop_loss = (o.client_order_id for o in reply.orders)
            await sim.set_price("AAPL", price + 60)  # through the take-profit
            await until_update(events, take_profit, status="filled")
            await until_update(events, stop_loss, status="canceled")
    groups = {
        o.order.order_ref: (o.order.oca_group, o.order.oca_type)
        for o in sim.exchange.orders.values()
    }
    list_id = reply.orders[0].leg.list_id if reply.orders[0].leg else None
    assert groups == {"so-0": ("", 0), take_profit: (list_id, 1), stop_loss: (list_id, 1)}
