"""Cancel of a final IB order through the service: the known final state is the answer.

TWS forgets an order's history (here: the simulator loses it, as a restarted
TWS does); the journal still knows the order filled. ``ult cancel`` then
answers ``already_final`` naming the state, not ``not_found``.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.brokers.ib.harness import BOUND, settings
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import AlreadyFinal
from ult_actors.messages import Cancel, OrderReply, OrderRequest, Submit
from ult_actors.service import build_service
from ult_actors.sim.ib import TwsSimulator


async def test_cancel_of_a_filled_order_tws_has_forgotten_names_its_state(
    sim: TwsSimulator, tmp_path: Path
) -> None:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="ib", state_dir=str(tmp_path)),
        brokers=[BrokerEntry(name="ib", kind="ib", enabled=True, settings=settings(sim.port))],
    )
    cfg.supervision.backoff_initial_ms = 20
    svc = build_service(cfg, env={}, rng=random.Random(3))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            await nursery.start(svc.run)
            buy = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="ib-done")
            filled = await svc.gateway.handle(Submit(id=1, order=buy, wait=True))
            assert isinstance(filled, OrderReply) and filled.order.status == "filled"
            sim.exchange.orders.clear()  # TWS no longer knows it
            await sim.drop_connections()
            await sim.wait_for_session(1, present=False)
            await sim.wait_for_session(1, present=True)  # the restarted actor reconnected
            for ref in ("ib-done", filled.order.ref):
                with pytest.raises(AlreadyFinal, match="is already filled"):
                    await svc.gateway.handle(Cancel(id=2, order_id=ref))
        nursery.cancel_scope.cancel()
