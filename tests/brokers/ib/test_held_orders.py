"""Orders TWS holds while cut off from IB, and answers a dead socket cannot bring.

The story (a colleague's chaos review): TWS lost IB (1100) and held an order;
the API socket dropped before the order's acknowledgement reached us; after
the broker actor's grace the lookup by client order id (order ref) found
nothing, because the held order was listed nowhere, so the actor sent it
again under a new id, and on the restore TWS placed both. Real TWS lists an
order it accepted but could not transmit yet as an open order in
PendingSubmit, which is what we now look it up by.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from tests.brokers.contract import UpdateLog
from tests.brokers.ib.harness import BOUND, RawClient, settings
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import GetOrder, OrderReply, OrderRequest, Submit
from ult_actors.service import Service, build_service
from ult_actors.sim.ib import TwsSimulator


def market(coid: str, qty: int = 3) -> OrderRequest:
    return OrderRequest(symbol="AAPL", side="buy", qty=Decimal(qty), client_order_id=coid)


def refs_at_sim(sim: TwsSimulator) -> list[str]:
    """The order ref of every order the simulator holds, placed or not."""
    return [o.order.order_ref for o in sim.exchange.orders.values()]


async def open_orders(client: RawClient) -> dict[int, str]:
    """Order id -> status of every open order TWS lists for this client."""
    await client.send(wire.ReqOpenOrders())
    return {
        m.order_id: m.status
        for m in await client.until(wire.OpenOrderEnd)
        if isinstance(m, wire.OpenOrder)
    }


# -- the simulator ------------------------------------------------------------------


async def test_a_held_order_is_listed_as_pending_submit_across_a_reconnect_then_worked(
    sim: TwsSimulator,
) -> None:
    contract = wire.Contract(symbol="AAPL")
    order = wire.IbOrder(
        action="BUY", total_quantity=Decimal(4), order_type="MKT", tif="DAY", order_ref="held-1"
    )
    with trio.fail_after(BOUND):
        first = await RawClient.connect(sim.port)
        await first.send(wire.StartApi(client_id=1))
        order_id = (await first.until(wire.NextValidId))[-1].order_id  # type: ignore[union-attr]
        await sim.connectivity_lost()
        await first.send(wire.PlaceOrder(order_id=order_id, contract=contract, order=order))
        acked = await first.until(wire.OrderStatus)
        assert [m.status for m in acked if isinstance(m, wire.OrderStatus)] == ["PendingSubmit"]
        assert await open_orders(first) == {order_id: "PendingSubmit"}
        await first.stream.aclose()
        await sim.wait_for_session(1, present=False)

        second = await RawClient.connect(sim.port)
        await second.send(wire.StartApi(client_id=1))
        await second.until(wire.NextValidId)
        assert await open_orders(second) == {order_id: "PendingSubmit"}  # still there
        await sim.connectivity_restored()  # worked on the restore: a market order fills
        await second.stream.aclose()
    assert [(o.order.order_ref, o.status) for o in sim.exchange.orders.values()] == [
        ("held-1", "Filled")
    ]


async def test_an_oca_member_held_after_its_peer_filled_is_canceled_on_the_restore(
    sim: TwsSimulator,
) -> None:
    """One leg of an OCO fills as it is placed; TWS loses IB; the other leg, sent now, is
    held. On the restore its cancel-on-fill group is done: TWS cancels it, never works it
    (chaos found such a leg resting at IB after its peer filled)."""
    contract = wire.Contract(symbol="AAPL")
    target = wire.IbOrder(
        action="SELL",
        total_quantity=Decimal(10),
        order_type="LMT",
        lmt_price=Decimal(5),
        tif="GTC",
        order_ref="t",
        oca_group="oco",
        oca_type=1,
    )
    stop = msgspec.structs.replace(
        target, order_type="STP", lmt_price=None, aux_price=Decimal(2), order_ref="s"
    )
    with trio.fail_after(BOUND):
        client = await RawClient.connect(sim.port)
        await client.send(wire.StartApi(client_id=1))
        order_id = (await client.until(wire.NextValidId))[-1].order_id  # type: ignore[union-attr]
        await client.send(wire.PlaceOrder(order_id=order_id, contract=contract, order=target))
        await client.until(wire.ExecDetails)  # filled as placed
        await sim.connectivity_lost()
        await client.send(wire.PlaceOrder(order_id=order_id + 1, contract=contract, order=stop))
        held = await client.until(wire.OrderStatus)
        while held[-1].order_id != order_id + 1:  # type: ignore[union-attr]
            held = await client.until(wire.OrderStatus)  # the filled leg's last word
        assert held[-1].status == "PendingSubmit"  # type: ignore[union-attr]
        await sim.connectivity_restored()
        await client.stream.aclose()
    assert [(o.order.order_ref, o.status) for o in sim.exchange.orders.values()] == [
        ("t", "Filled"),
        ("s", "Cancelled"),
    ]


# -- the connector ------------------------------------------------------------------


async def test_a_held_order_whose_ack_was_lost_is_found_pending_after_the_reconnect(
    sim: TwsSimulator,
) -> None:
    """PendingSubmit is our pending_new; once IB has it, it is worked as usual."""
    sim.connected_to_ib = False  # TWS just lost IB; its 1100 is not out yet
    sim.faults.drop_on_order = 1
    first = IbConnector("ib", settings(sim.port))
    with trio.fail_after(BOUND):
        await first.connect()
        with pytest.raises(BrokerUnavailable, match="outcome is unknown"):
            await first.submit(market("held-2"))
        await first.disconnect()
        await sim.wait_for_session(1, present=False)

    second = IbConnector("ib", settings(sim.port))
    log = UpdateLog()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            await second.connect()
            found = await second.get_order_by_client_id("held-2")
            assert (found.status, found.qty) == ("pending_new", 3)
            await nursery.start(second.stream_updates, log.sink)
            await sim.connectivity_restored()
            await log.wait_for(
                lambda u: u.order.client_order_id == "held-2" and u.order.status == "filled"
            )
            await second.disconnect()
        nursery.cancel_scope.cancel()
    assert refs_at_sim(sim) == ["held-2"]


async def test_a_submit_waiting_for_its_ack_fails_as_soon_as_the_socket_drops(
    sim: TwsSimulator,
) -> None:
    """Not at the ack timeout: the order's outcome is unknown now, and looked up."""
    sim.faults.drop_on_order = 1
    connector = IbConnector("ib", settings(sim.port, ack_timeout_s=3600.0))
    ended = trio.Event()

    async def read() -> None:
        try:
            await connector.stream_updates(UpdateLog().sink)
        except BrokerUnavailable:
            ended.set()

    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):  # far below the ack timeout
            await connector.connect()
            nursery.start_soon(read)
            with pytest.raises(BrokerUnavailable, match="outcome is unknown"):
                await connector.submit(market("dropped-1"))
            await ended.wait()
            with pytest.raises(BrokerUnavailable):
                await connector.open_orders()  # later requests on the dead socket too
            await connector.disconnect()
        nursery.cancel_scope.cancel()
    assert refs_at_sim(sim) == ["dropped-1"]  # it did land: hence "unknown", not "failed"


async def test_every_waiter_fails_at_once_when_the_socket_drops_before_streaming(
    sim: TwsSimulator,
) -> None:
    """Before ``stream_updates`` runs one waiter reads for all; the others must hear too."""
    # TWS reads the order, works on it a moment (meanwhile the second request is
    # sent and parks behind the reading submit), then the socket drops.
    sim.faults.ack_delay_s = 0.3
    sim.faults.drop_on_order = 1
    connector = IbConnector(
        "ib", settings(sim.port, ack_timeout_s=3600.0, request_timeout_s=3600.0)
    )
    submitted: list[BaseException] = []

    async def submit() -> None:
        try:
            await connector.submit(market("dropped-2"))
        except BrokerUnavailable as exc:
            submitted.append(exc)

    with trio.fail_after(BOUND):  # far below both timeouts
        await connector.connect()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit)
            await trio.testing.wait_all_tasks_blocked()  # the submit reads the socket
            with pytest.raises(BrokerUnavailable):
                await connector.open_orders()  # parked behind that reader
        await connector.disconnect()
    assert "outcome is unknown" in str(submitted[0])
    assert refs_at_sim(sim) == ["dropped-2"]


# -- the service ----------------------------------------------------------------------


async def test_a_held_order_found_after_the_reconnect_is_not_sent_again(
    sim: TwsSimulator, tmp_path: Path
) -> None:
    """The duplicate of the story: exactly one order at TWS after the restore."""
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="ib", state_dir=str(tmp_path)),
        brokers=[BrokerEntry(name="ib", kind="ib", enabled=True, settings=settings(sim.port))],
    )
    cfg.supervision.backoff_initial_ms = 20
    cfg.supervision.backoff_cap_ms = 50
    cfg.retry.delay_ms = 20
    svc = build(cfg)
    sim.connected_to_ib = False
    sim.faults.drop_on_order = 1
    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            await nursery.start(svc.run)
            await sim.wait_for_session(1, present=True)
            reply = await svc.gateway.handle(Submit(id=1, order=market("svc-held")))
            assert isinstance(reply, OrderReply)
            # Whatever the reply said, the actor reconnected and found the held order.
            assert reply.order.status == "pending_new"
            events = svc.bus.subscribe()
            await sim.connectivity_restored()
            while True:
                event = await events.receive()
                order = getattr(event, "order", None)
                if order is not None and (order.client_order_id, order.status) == (
                    "svc-held",
                    "filled",
                ):
                    break
            got = await svc.gateway.handle(GetOrder(id=2, order_id="svc-held"))
            assert isinstance(got, OrderReply) and got.order.status == "filled"
        nursery.cancel_scope.cancel()
    assert refs_at_sim(sim) == ["svc-held"]


def build(cfg: ServiceConfig) -> Service:
    return build_service(
        cfg, env={}, rng=random.Random(5), reconcile=ReconcilePolicy(settle_grace_s=0.2)
    )
