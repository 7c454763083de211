"""A native OANDA bracket still on its way is no order reconciliation may rule on.

The legs of a venue's own list are journaled ``pending_new`` before the list
leaves. While the list's request is still going (a slow venue, a lost answer
looked up, the list asked again), the running reconciliation passes over
them like any order stuck in flight: had it looked them up meanwhile, it
would have found nothing and ruled them ``rejected`` (never reached the
broker); the entry's answer then puts the entry right (it has a venue id),
but the exits, which v20 makes only from the entry's fill, would stay
``rejected`` while the venue says the list ended otherwise.
"""

from __future__ import annotations

import random
import time
from decimal import Decimal
from pathlib import Path

import trio

from tests.brokers.oanda.harness import running_sim, sell_exit, settings_for
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.oanda.connector import OandaConnector
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.messages import (
    Order,
    OrderListRequest,
    OrderRequest,
    OrdersReply,
    SubmitList,
)
from ult_actors.service import build_service

#: Reconciliation at test speed: an order 0.1 s in flight is stuck and looked up.
FAST = ReconcilePolicy(settle_grace_s=0.05, stuck_after_s=0.1, interval_s=0.05, sweep_every=2)


class SlowListVenue(OandaConnector):
    """OANDA whose list requests arrive only after reconciliation had two sweeps' time to
    rule on the journaled legs (its sweeps are the calls to ``open_orders``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.swept = trio.Event()

    async def open_orders(self) -> list[Order]:
        self.swept.set()
        self.swept = trio.Event()
        return await super().open_orders()

    async def submit_list(self, request: OrderListRequest) -> list[Order]:
        # The legs were journaled before this call: stuck in flight for reconciliation
        # once ``stuck_after_s`` has passed. A pass that looks them up ends before the
        # second sweep that starts after then (sweeps come every other pass).
        stuck_at = time.time_ns() + int(FAST.stuck_after_s * 1e9)
        sweeps = 0
        while sweeps < 2:
            await self.swept.wait()
            if time.time_ns() >= stuck_at:
                sweeps += 1
        return await super().submit_list(request)


async def test_a_slow_bracket_whose_entry_v20_cancels_ends_every_leg_as_the_venue_has_it(
    tmp_path: Path,
) -> None:
    async with running_sim() as sim:
        # Less offered than the entry asks: v20 cancels the FOK market entry at once,
        # and never makes its exits.
        sim.set_price("EUR_USD", {"bid": "1.08493", "ask": "1.08507", "liquidity": "500"})
        connector = SlowListVenue("oanda", settings_for(sim))
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[
                BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings_for(sim))
            ],
        )
        svc = build_service(
            cfg,
            env={},
            rng=random.Random(11),
            connector_factories={"oanda": lambda: connector},
            reconcile=FAST,
        )
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
            bracket = OrderListRequest(
                contingency="bracket",
                list_id="slow-br-list",
                legs=[
                    OrderRequest(
                        symbol="EUR_USD", side="buy", qty=Decimal(1000), client_order_id="slow-br"
                    ),
                    sell_exit("slow-br-tp", "limit", "1.09000"),
                    sell_exit("slow-br-sl", "stop", "1.08000"),
                ],
            )
            with trio.fail_after(20):
                reply = await svc.gateway.handle(SubmitList(id=1, orders=bracket))
            assert isinstance(reply, OrdersReply), reply
            coids = ["slow-br", "slow-br-tp", "slow-br-sl"]
            at_venue = [await connector.get_order_by_client_id(c) for c in coids]
            assert [o.status for o in at_venue] == ["canceled"] * 3
            store = await svc.journal.get()
            journaled = [await store.get(c) for c in coids]
            assert [o.status if o else None for o in journaled] == ["canceled"] * 3
            assert [o.status for o in reply.orders] == ["canceled"] * 3
            assert [o.reject_reason if o else None for o in journaled[1:]] == [
                "its entry slow-br is canceled"
            ] * 2
            nursery.cancel_scope.cancel()
