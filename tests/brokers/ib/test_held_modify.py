"""A modify TWS holds past its answer (TWS had lost IB): the journal ends as TWS applied it.

When TWS has lost its connection to IB, it keeps a modify to itself and answers
nothing until IB is back. The service cannot tell such a modify from one that
never arrived, so it must not settle it as refused: once TWS applies it, even
after the service restarted meanwhile and even if it had concluded the modify
never arrived, the old order ends ``replaced`` and the replacement carries
TWS's fill, as at TWS. The whole service runs on the TWS
simulator over loopback, with its journal in a SQLite file.
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
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import Order, OrderReply, OrderRequest, Replace, ReplaceRequest, Submit
from ult_actors.service import Service, build_service
from ult_actors.sim.ib import TwsSimulator

CLIENT_ID = 1  # the connector's default API client id


@asynccontextmanager
async def service(sim: TwsSimulator, state_dir: Path) -> AsyncIterator[Service]:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="ib", state_dir=str(state_dir)),
        brokers=[
            BrokerEntry(
                name="ib", kind="ib", enabled=True, settings=settings(sim.port, ack_timeout_s=0.5)
            )
        ],
    )
    policy = ReconcilePolicy(settle_grace_s=0.1, stuck_after_s=0.5, interval_s=0.1)
    svc = build_service(cfg, env={}, rng=random.Random(11), reconcile=policy)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


async def journaled(svc: Service, coid: str) -> Order:
    store = await svc.journal.get()
    order = await store.get(coid)
    assert order is not None
    return order


async def until(svc: Service, want: dict[str, str]) -> dict[str, Order]:
    with trio.fail_after(BOUND):
        while True:
            orders = {coid: await journaled(svc, coid) for coid in want}
            if {coid: o.status for coid, o in orders.items()} == want:
                return orders
            await trio.sleep(0.02)


@pytest.mark.parametrize("given_up", [False, True], ids=["in-flight", "given-up"])
async def test_a_modify_tws_held_until_after_a_restart_ends_as_tws_applied_it(
    sim: TwsSimulator, tmp_path: Path, given_up: bool
) -> None:
    resting = OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(10), type="limit", limit_price=Decimal(5),
        time_in_force="gtc", client_order_id="held-1",
    )  # fmt: skip
    # Across the market: the replacement fills once TWS lets the modify through.
    change = ReplaceRequest(
        order_id="held-1", limit_price=Decimal(1000), client_order_id="held-2"
    )
    async with service(sim, tmp_path) as svc:
        with trio.fail_after(BOUND):
            placed = await svc.gateway.handle(Submit(id=1, order=resting))
            assert isinstance(placed, OrderReply) and placed.order.status == "accepted"
            sim.connected_to_ib = False  # TWS has lost IB; its 1100 has not reached us yet
            with pytest.raises(BrokerUnavailable):
                await svc.gateway.handle(Replace(id=2, change=change))
            assert (await journaled(svc, "held-2")).status == "pending_new"
            if given_up:
                # Still not at TWS when reconciliation asks: never arrived, as far as
                # the service can tell (TWS says nothing of what it holds).
                await until(svc, {"held-1": "accepted", "held-2": "rejected"})
    # The service is gone when IB comes back and TWS works the modify it held.
    await sim.connectivity_restored()
    async with service(sim, tmp_path) as svc:
        orders = await until(svc, {"held-1": "replaced", "held-2": "filled"})
    assert orders["held-1"].replaced_by == "held-2"
    assert (orders["held-2"].replaces, orders["held-2"].filled_qty) == ("held-1", Decimal(10))
    assert orders["held-2"].id == placed.order.id  # TWS kept its order id


async def test_a_held_modify_canceled_at_tws_while_the_service_was_down_ends_replaced(
    sim: TwsSimulator, tmp_path: Path
) -> None:
    # TWS applies the modify it held, then the replacement is canceled there, and the
    # service learns none of it before it restarts (a kill -9 lost those answers).
    # TWS then reports the order only among its completed orders, which carry no
    # order id: the link to the old order is the journal's, by the client order id.
    resting = OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(10), type="limit", limit_price=Decimal(5),
        time_in_force="gtc", client_order_id="gone-1",
    )  # fmt: skip
    change = ReplaceRequest(order_id="gone-1", qty=Decimal(12), client_order_id="gone-2")
    async with service(sim, tmp_path) as svc:
        with trio.fail_after(BOUND):
            placed = await svc.gateway.handle(Submit(id=1, order=resting))
            assert isinstance(placed, OrderReply) and placed.order.status == "accepted"
            sim.connected_to_ib = False
            with pytest.raises(BrokerUnavailable):
                await svc.gateway.handle(Replace(id=2, change=change))
            assert (await journaled(svc, "gone-2")).status == "pending_new"
    await sim.connectivity_restored()
    sim.exchange.cancel(CLIENT_ID, int(placed.order.id))
    async with service(sim, tmp_path) as svc:
        orders = await until(svc, {"gone-1": "replaced", "gone-2": "canceled"})
    assert orders["gone-1"].replaced_by == "gone-2"
    assert orders["gone-2"].replaces == "gone-1"
    assert orders["gone-2"].id == placed.order.id  # TWS kept its order id
