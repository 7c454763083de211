"""The whole service on the Alpaca simulator: configured from the environment, as users do."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.brokers.alpaca.harness import running_sim, service_on
from ult_actors.errors import AuthFailed
from ult_actors.messages import (
    Cancel,
    GetAccount,
    GetPositions,
    OrderReply,
    OrderRequest,
    OrderUpdate,
    PositionsReply,
    Submit,
)
from ult_actors.sim.alpaca.faults import Fault


def buy(coid: str, qty: str = "1") -> OrderRequest:
    return OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(qty), broker="alpaca", client_order_id=coid
    )


async def test_a_submit_with_wait_fills_and_the_position_shows_it() -> None:
    async with running_sim() as (_sim, port), service_on(port) as svc:
        with trio.fail_after(15):
            reply = await svc.gateway.handle(Submit(id=1, order=buy("svc-1"), wait=True))
        assert isinstance(reply, OrderReply)
        assert reply.order.status == "filled" and reply.order.filled_qty == 1
        assert reply.order.avg_fill_price == Decimal("190.00")
        with trio.fail_after(10):
            while True:  # the positions actor applies the same fill as its own event
                rows = await svc.gateway.handle(GetPositions(id=2, broker="alpaca"))
                assert isinstance(rows, PositionsReply)
                if any(p.symbol == "AAPL" and p.qty == 1 for p in rows.positions):
                    break
                await trio.sleep(0.02)


async def test_a_lost_submit_reply_is_settled_by_lookup_and_sent_only_once() -> None:
    async with running_sim() as (sim, port), service_on(port) as svc:
        sim.arm(Fault(kind="lose_reply", method="POST", path="/v2/orders"))
        with trio.fail_after(15):
            reply = await svc.gateway.handle(Submit(id=1, order=buy("svc-lost"), wait=True))
        assert isinstance(reply, OrderReply)
        assert reply.order.status == "filled"
        assert sim.venue.stats.submits == 1  # found by client order id: never resent
        assert sim.venue.stats.orders_created == 1


async def test_refused_keys_leave_the_broker_failed_without_a_restart_loop() -> None:
    async with running_sim() as (sim, port), service_on(port, secret="not-the-secret") as svc:
        with trio.fail_after(10), pytest.raises(AuthFailed):
            await svc.gateway.handle(GetAccount(id=1, broker="alpaca"))
        with trio.fail_after(10), pytest.raises(AuthFailed):
            await svc.gateway.handle(Submit(id=2, order=buy("svc-refused")))
        health = {h.name: h for h in svc.health().actors}
        broker = next(h for name, h in health.items() if name.endswith("alpaca"))
        assert broker.state == "failed" and broker.restarts == 0
        assert sim.requests == 1  # one refused connect; nothing retried it
        assert sim.venue.stats.submits == 0


async def test_cancel_by_client_order_id_reaches_the_alpaca_order() -> None:
    async with running_sim() as (sim, port), service_on(port) as svc:
        request = OrderRequest(
            symbol="AAPL",
            side="buy",
            qty=Decimal(1),
            type="limit",
            limit_price=Decimal("150.00"),
            time_in_force="gtc",
            broker="alpaca",
            client_order_id="svc-rest",
        )
        with trio.fail_after(15):
            placed = await svc.gateway.handle(Submit(id=1, order=request))
            assert isinstance(placed, OrderReply) and placed.order.status == "accepted"
            reply = await svc.gateway.handle(Cancel(id=2, order_id="svc-rest"))
        assert isinstance(reply, OrderReply)
        assert reply.order.status == "canceled"
        assert sim.venue.orders[placed.order.id].status == "canceled"


async def test_a_fill_made_while_the_stream_is_silent_reaches_journal_positions_and_bus_once(
    tmp_path: Path,
) -> None:
    config = tmp_path / "ult.toml"
    config.write_text(
        '[brokers.alpaca]\nkind = "alpaca"\nstale_after_s = 1.0\nstream_ping_interval_s = 0.2\n'
    )
    async with running_sim(autofill=False) as (sim, port), service_on(port, config=config) as svc:
        fills = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate) and e.fill is not None)
        with trio.fail_after(15):
            reply = await svc.gateway.handle(Submit(id=1, order=buy("svc-silent", "2")))
        assert isinstance(reply, OrderReply) and reply.order.status == "accepted"
        sim.arm(Fault(kind="silent"))
        sim.venue.execute(sim.venue.get_by_client_id("svc-silent").id)  # nobody hears of it
        await sim.wait_listening(2)  # found silent, reconnected, resynced
        with trio.fail_after(10):
            event = await fills.receive()
        assert isinstance(event, OrderUpdate) and event.fill is not None
        execution_id = sim.venue.activities.entries[0]["id"].partition("::")[2]
        assert (event.fill.client_order_id, event.fill.qty) == ("svc-silent", Decimal(2))
        assert event.fill.fill_id == execution_id
        store = await svc.journal.get()
        with trio.fail_after(10):
            while (journaled := await store.get("svc-silent")) is None or (
                journaled.status != "filled"
            ):
                await trio.sleep(0.02)  # the journal writes in the background
        with trio.fail_after(10):
            while True:
                rows = await svc.gateway.handle(GetPositions(id=2, broker="alpaca"))
                assert isinstance(rows, PositionsReply)
                if any(p.symbol == "AAPL" and p.qty == 2 for p in rows.positions):
                    break
                await trio.sleep(0.02)
        # Another reconnect finds nothing new: the next fill published is the next order's.
        sim.cut_streams()
        await sim.wait_listening(3)
        with trio.fail_after(15):
            await svc.gateway.handle(Submit(id=3, order=buy("svc-after")))
            sim.venue.execute(sim.venue.get_by_client_id("svc-after").id)
            following = await fills.receive()
        assert isinstance(following, OrderUpdate) and following.fill is not None
        assert following.fill.client_order_id == "svc-after"
