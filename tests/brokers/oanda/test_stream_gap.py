"""Issue 18's acceptance at OANDA: a fill made while the transaction stream is silent is
applied once, before the gate reopens; orders sent meanwhile are held or refused as configured.

The real service on the OANDA simulator. The stream goes silent (open, no
heartbeats); the venue fills a resting order meanwhile. The silence is found
(``stale_after_s``), the connection reconnects, and its catch-up from
``/transactions/sinceid`` is slowed down so that a client's new order surely
arrives while the connection is not ``ready``.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
import trio

from tests.brokers.harness import until_state, watch_connection
from tests.brokers.oanda.harness import ACCOUNT, running_sim, settings_for
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
from ult_actors.service import build_service
from ult_actors.sim.oanda.faults import Fault


@pytest.mark.parametrize("on_unavailable", ["hold", "refuse"])
async def test_a_fill_while_the_stream_is_silent_is_applied_once_before_orders_go_again(
    tmp_path: Path, on_unavailable: Literal["hold", "refuse"]
) -> None:
    async with running_sim(heartbeat_s=0.1) as sim:
        entry = BrokerEntry(
            name="oanda",
            kind="oanda",
            enabled=True,
            settings=settings_for(sim, stale_after_s=1.0),
            on_unavailable=on_unavailable,
        )
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[entry],
        )
        cfg.supervision.backoff_initial_ms = 20
        cfg.supervision.backoff_cap_ms = 100
        svc = build_service(cfg, env={}, rng=random.Random(3))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
            limit = OrderRequest(
                symbol="EUR_USD",
                side="buy",
                qty=Decimal(1000),
                type="limit",
                limit_price=Decimal("1.00000"),
                time_in_force="gtc",
                client_order_id="gap-rest",
            )
            reply = await svc.gateway.handle(Submit(id=1, order=limit))
            assert isinstance(reply, OrderReply) and reply.order.status == "accepted"
            events = watch_connection(svc.bus)

            sim.arm(Fault(kind="silent"))
            sim.arm(
                Fault(
                    kind="slow",
                    delay_s=1.0,
                    path=f"/v3/accounts/{ACCOUNT}/transactions/sinceid",
                )
            )
            sim.feed.set_quote("EUR_USD", Decimal("0.99986"), Decimal("1.00000"))
            sim.book.on_prices()  # the limit fills while nobody hears of it
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
