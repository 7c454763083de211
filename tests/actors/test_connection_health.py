"""A broker connection's health and request budget, through the whole tree (issue 18)."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.actors.harness import NOW_NS, req
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import RateLimited
from ult_actors.messages import OrderReply, Submit
from ult_actors.service import build_service

_ids = itertools.count(1)


async def test_order_that_cannot_get_budget_in_time_is_refused_unsent(tmp_path: Path) -> None:
    settings = PaperSettings(
        tick_interval_s=0,
        start_prices={"AAPL": Decimal(100)},
        state_path=str(tmp_path / "paper.db"),
    )
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(tmp_path)),
        brokers=[
            BrokerEntry(
                name="paper",
                kind="paper",
                enabled=True,
                settings=settings,
                requests_per_s=0.5,  # one request per 2 s
                request_burst=1,
            )
        ],
    )
    svc = build_service(
        cfg,
        env={},
        rng=random.Random(3),
        now_ns=lambda: NOW_NS,
        connector_factories={
            "paper": lambda: PaperConnector("paper", settings, now_ns=lambda: NOW_NS)
        },
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        with trio.fail_after(10):
            first = await svc.gateway.handle(Submit(id=next(_ids), order=req()))
            assert isinstance(first, OrderReply)
            # The budget is spent; the next one's client waits at most 1 s: refused now.
            late = req(deadline_ns=NOW_NS + 10**9)
            with pytest.raises(RateLimited) as refused:
                await svc.gateway.handle(Submit(id=next(_ids), order=late))
        assert refused.value.retry_after is not None and refused.value.retry_after > 1
        connection = svc.health().connections["paper"]
        assert connection.state == "ready"
        assert connection.budget is not None
        assert (connection.budget.rate_per_s, connection.budget.burst) == (0.5, 1)
        assert connection.budget.refused == 1
        # Never sent, never journaled: the broker and the journal know only the first.
        store = await svc.journal.get()
        assert await store.get(late.client_order_id or "") is None
        nursery.cancel_scope.cancel()
