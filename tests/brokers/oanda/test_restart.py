"""OANDA whose account history restarted (a fresh simulator): the service heals by itself.

The service's transaction cursor is then ahead of the account's newest
transaction, and v20 answers the backfill from it with 416. That is our
cursor being wrong, not the broker: the connection realigns to the
account's ``lastTransactionID``, settles its journaled orders from the
broker's record and trades again, with nobody doing anything.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import structlog
import trio
import trio.testing

from tests.brokers.oanda.harness import ACCOUNT, TOKEN, resting_buy, settings_for
from ult_actors.brokers.oanda.mapping import order_body
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.messages import (
    GetPositions,
    OrderReply,
    OrderRequest,
    OrderUpdate,
    PositionsReply,
    Submit,
)
from ult_actors.service import Service, build_service
from ult_actors.sim.oanda.server import OandaSimulator


def _sim() -> OandaSimulator:
    return OandaSimulator(token=TOKEN, account_id=ACCOUNT, seed=7, tick_s=0)


def _config(tmp: Path, sim: OandaSimulator) -> ServiceConfig:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="oanda", state_dir=str(tmp)),
        brokers=[BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings_for(sim))],
    )
    cfg.supervision.backoff_initial_ms = 20
    cfg.supervision.backoff_cap_ms = 100
    cfg.supervision.max_restarts = 100  # an outage is retried, not parked (not this test's point)
    return cfg


async def _submit(svc: Service, request: OrderRequest, rid: int) -> OrderReply:
    reply = await svc.gateway.handle(Submit(id=rid, order=request))
    assert isinstance(reply, OrderReply), reply
    return reply


async def test_a_restarted_account_history_is_followed_and_the_known_order_settled(
    tmp_path: Path,
) -> None:
    first = _sim()
    async with trio.open_nursery() as nursery:
        first_scope = trio.CancelScope()

        async def run_first(task_status: trio.TaskStatus[int]) -> None:
            with first_scope:
                await first.serve(task_status=task_status)

        port: int = await nursery.start(run_first)
        svc = build_service(_config(tmp_path, first), env={}, rng=random.Random(5))
        with trio.fail_after(15):
            await nursery.start(svc.run)
        events = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))
        for i in range(4):  # fills move the account's transaction ids well ahead
            warm = OrderRequest(
                symbol="EUR_USD", side="buy", qty=Decimal(1), client_order_id=f"warm-{i}"
            )
            await _submit(svc, warm, i)
        assert (await _submit(svc, resting_buy("rest-1"), 10)).order.status == "accepted"
        ahead = int(first.book.last_id)

        # The simulator goes away with every connection (the stream dies with it) and
        # comes back on the same port with a fresh account: its ids restart low. Its
        # record of rest-1 survived and filled meanwhile (as a venue's order book would).
        second = _sim()
        second.book.create_order(order_body(resting_buy("rest-1")))
        second.feed.set_quote("EUR_USD", Decimal("0.99986"), Decimal("1.00000"))
        second.book.on_prices()
        assert int(second.book.last_id) < ahead
        with structlog.testing.capture_logs() as logs:
            first_scope.cancel()
            await nursery.start(second.serve, port)

            with trio.fail_after(20):
                async for event in events:
                    assert isinstance(event, OrderUpdate)
                    if event.order.client_order_id == "rest-1" and event.order.status == "filled":
                        break
            # It trades again: a new order reaches the fresh account and fills there.
            sell = OrderRequest(
                symbol="EUR_USD", side="sell", qty=Decimal(1), client_order_id="after-1"
            )
            with trio.fail_after(20):
                after = await _submit(svc, sell, 20)
        assert after.order.status == "filled"
        # Positions too: the books are the fresh account's, not the old one's plus fills.
        await trio.testing.wait_all_tasks_blocked()  # positions and risk read the fill
        held = await svc.gateway.handle(GetPositions(id=30, broker="oanda"))
        assert isinstance(held, PositionsReply)
        assert [(p.symbol, p.qty) for p in held.positions] == [
            ("EUR_USD", second.book.net("EUR_USD"))
        ]
        assert svc.risk_state.books[("oanda", "EUR_USD")].qty == second.book.net("EUR_USD")
        assert "after-1" in second.book.by_client_id
        store = await svc.journal.get()
        settled = await store.get("rest-1")
        assert settled is not None and settled.status == "filled"
        assert settled.filled_qty == Decimal(1000)
        realigned = [e for e in logs if "cursor ahead" in e["event"]]
        assert realigned and realigned[0]["log_level"] == "warning"
        assert realigned[0]["cursor"] >= ahead
        nursery.cancel_scope.cancel()


async def test_an_order_placed_on_oandas_own_platform_is_adopted_and_later_settled_by_its_id(
    tmp_path: Path,
) -> None:
    sim = _sim()
    async with trio.open_nursery() as outer:
        await outer.start(sim.serve)
        # Placed without a client id (as OANDA's web platform does): ours calls it oanda-<id>.
        spec = order_body(resting_buy("unused"))["order"]
        del spec["clientExtensions"]
        async with trio.open_nursery() as nursery:
            svc = build_service(_config(tmp_path, sim), env={}, rng=random.Random(5))
            with trio.fail_after(15):
                await nursery.start(svc.run)
            events = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))
            status, created = sim.book.create_order({"order": spec})
            assert status == 201
            coid = f"oanda-{created['orderCreateTransaction']['id']}"
            with trio.fail_after(15):
                update = await events.receive()
            assert isinstance(update, OrderUpdate)
            assert (update.order.client_order_id, update.order.origin) == (coid, "adopted")
            nursery.cancel_scope.cancel()  # the service stops...
        sim.feed.set_quote("EUR_USD", Decimal("0.99986"), Decimal("1.00000"))
        sim.book.on_prices()  # ... and the order fills meanwhile
        again = build_service(_config(tmp_path, sim), env={}, rng=random.Random(6))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(again.run)  # started: reconciled
            settled = await (await again.journal.get()).get(coid)
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    assert settled is not None
    assert (settled.status, settled.filled_qty, settled.origin) == (
        "filled",
        Decimal(1000),
        "adopted",
    )
