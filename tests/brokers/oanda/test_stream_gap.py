"""Issue 18's acceptance at OANDA: a fill made while the transaction stream is silent is
applied once, before the gate reopens; orders sent meanwhile are held or refused as configured;
a fill whose application crashed the broker actor is applied once after it.

The real service on the OANDA simulator. The stream goes silent (open, no
heartbeats); the venue fills a resting order meanwhile. The silence is found
(``stale_after_s``), the connection reconnects, and its catch-up from
``/transactions/sinceid`` is slowed down so that a client's new order surely
arrives while the connection is not ``ready``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
import trio

from tests.brokers.harness import (
    crash_applying_first_fill,
    fills_journaled,
    until_state,
    watch_connection,
)
from tests.brokers.oanda.harness import (
    ACCOUNT,
    delivered_everything,
    resting_buy,
    running_sim,
    settings_for,
)
from ult_actors.brokers.base import Connector
from ult_actors.brokers.oanda.connector import OandaConnector
from ult_actors.brokers.oanda.stream import Deliver, TransactionCursor, TransactionFeed
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import (
    GetPositions,
    OrderReply,
    OrderRequest,
    OrderUpdate,
    PositionsReply,
    SetTradingState,
    Submit,
)
from ult_actors.service import Service, build_service
from ult_actors.sim.oanda.faults import Fault
from ult_actors.sim.oanda.server import OandaSimulator


def service_on(
    sim: OandaSimulator,
    tmp_path: Path,
    on_unavailable: str = "hold",
    cursor: TransactionCursor | None = None,
) -> Service:
    """The service with one OANDA broker on ``sim``: silence found after 1 s, quick restarts;
    its connections deliver transactions after ``cursor``, which the test may then watch."""
    settings = settings_for(sim, stale_after_s=1.0)
    entry = BrokerEntry(
        name="oanda", kind="oanda", enabled=True, settings=settings, on_unavailable=on_unavailable
    )
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
        brokers=[entry],
    )
    cfg.supervision.backoff_initial_ms = 20
    cfg.supervision.backoff_cap_ms = 100
    factories: dict[str, Callable[[], Connector]] = {}
    if cursor is not None:
        factories["oanda"] = lambda: OandaConnector("oanda", settings, cursor=cursor)
    return build_service(cfg, env={}, rng=random.Random(3), connector_factories=factories)


def fill_resting(sim: OandaSimulator) -> None:
    """The ask comes down to a ``resting_buy``'s limit: it fills."""
    sim.feed.set_quote("EUR_USD", Decimal("0.99986"), Decimal("1.00000"))
    sim.book.on_prices()


@pytest.mark.parametrize("on_unavailable", ["hold", "refuse"])
async def test_a_fill_while_the_stream_is_silent_is_applied_once_before_orders_go_again(
    tmp_path: Path, on_unavailable: Literal["hold", "refuse"]
) -> None:
    async with running_sim(heartbeat_s=0.1) as sim:
        cursor = TransactionCursor()
        svc = service_on(sim, tmp_path, on_unavailable, cursor)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
            reply = await svc.gateway.handle(Submit(id=1, order=resting_buy("gap-rest")))
            assert isinstance(reply, OrderReply) and reply.order.status == "accepted"
            events = watch_connection(svc.bus)
            # A fetch still in flight when the faults are armed hears of the fill (it did on
            # a loaded machine).
            await delivered_everything(cursor, sim)

            sim.arm(Fault(kind="silent"))
            sim.arm(
                Fault(
                    kind="slow",
                    delay_s=1.0,
                    path=f"/v3/accounts/{ACCOUNT}/transactions/sinceid",
                )
            )
            fill_resting(sim)  # the limit fills while nobody hears of it
            before = await until_state(events, "connecting")  # the silence was found
            assert [e for e in before if isinstance(e, OrderUpdate)] == []

            answers: list[object] = []
            answered = trio.Event()
            market = OrderRequest(
                symbol="EUR_USD", side="buy", qty=Decimal(1), client_order_id="gap-new"
            )

            async def send_during_the_gap() -> None:
                try:
                    answers.append(await svc.gateway.handle(Submit(id=2, order=market)))
                except BrokerUnavailable as exc:
                    answers.append(exc)
                answered.set()

            nursery.start_soon(send_during_the_gap)
            seen = await until_state(events, "ready")
            fills = [e for e in seen if isinstance(e, OrderUpdate)]
            assert [(e.order.client_order_id, e.fill and e.fill.qty) for e in fills] == [
                ("gap-rest", Decimal(1000))
            ]  # once, before the gate reopened
            with trio.fail_after(10):
                await answered.wait()
            [answer] = answers
            store = await svc.journal.get()
            if on_unavailable == "hold":
                assert isinstance(answer, OrderReply) and answer.order.status == "filled"
                want = Decimal(1001)
            else:
                assert isinstance(answer, BrokerUnavailable)
                assert await store.get("gap-new") is None  # nothing journaled, nothing sent
                want = Decimal(1000)
            rest = await store.get("gap-rest")
            assert rest is not None and rest.status == "filled"
            positions = await svc.gateway.handle(GetPositions(id=3, broker="oanda"))
            assert isinstance(positions, PositionsReply)
            assert [(p.symbol, p.qty) for p in positions.positions] == [("EUR_USD", want)]
            # Risk's own book has the gap's fill: in reducing mode it lets through a sell of
            # the whole position (an order it would refuse as growing one it knows nothing of).
            await svc.gateway.handle(SetTradingState(id=4, state="reducing", broker="oanda"))
            sell = OrderRequest(symbol="EUR_USD", side="sell", qty=want, client_order_id="gap-out")
            sold = await svc.gateway.handle(Submit(id=5, order=sell, wait=True))
            assert isinstance(sold, OrderReply) and sold.order.status == "filled"
            nursery.cancel_scope.cancel()


async def test_a_fill_whose_application_crashed_the_broker_actor_is_applied_once_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_sim(heartbeat_s=0.1) as sim:
        svc = service_on(sim, tmp_path)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
            reply = await svc.gateway.handle(Submit(id=1, order=resting_buy("crash-1")))
            assert isinstance(reply, OrderReply) and reply.order.status == "accepted"
            events = watch_connection(svc.bus)
            # The window: the venue fills the order just after the reconnect's catch-up
            # (the stream never says so; the next heartbeat names the fill's id) ...
            catch_up = TransactionFeed.backfill
            filled: list[bool] = []

            async def catch_up_then_fill(feed: TransactionFeed, deliver: Deliver) -> int:
                count = await catch_up(feed, deliver)
                if not filled:
                    filled.append(True)
                    sim.arm(Fault(kind="drop_events", events=["ORDER_FILL"]))
                    fill_resting(sim)
                return count

            monkeypatch.setattr(TransactionFeed, "backfill", catch_up_then_fill)
            # ... and the broker actor crashes while it applies that fill (after the
            # connector found it, before the journal, risk and positions have it).
            crashes = await crash_applying_first_fill(svc, "crash-1", monkeypatch)
            store = await svc.journal.get()
            sim.arm(Fault(kind="silent"))  # found after 1 s: the actor reconnects
            while not crashes:  # ends once the incarnation after the crash is in step
                await until_state(events, "ready")
            assert sim.events_dropped == 1 and len(crashes) == 1
            fill_txn = next(
                t
                for t in sim.book.transactions_since(reply.order.id)[1]["transactions"]
                if t["type"] == "ORDER_FILL"
            )
            journaled = await fills_journaled(svc, "oanda", "crash-1")
            assert [(f.fill_id, f.qty) for f in journaled] == [(fill_txn["id"], Decimal(1000))]
            assert crashes == [fill_txn["id"]]
            order = await store.get("crash-1")
            assert order is not None and order.status == "filled"
            positions = await svc.gateway.handle(GetPositions(id=3, broker="oanda"))
            assert isinstance(positions, PositionsReply)
            assert [(p.symbol, p.qty) for p in positions.positions] == [("EUR_USD", Decimal(1000))]
            assert svc.health().connections["oanda"].state == "ready"
            nursery.cancel_scope.cancel()
