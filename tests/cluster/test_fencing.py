"""An active instance whose lease may have run out sends nothing to a venue: the broker
actor's connector is fenced by the lease's local deadline (trio's clock)."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.actors.harness import NOW_NS, req
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.cluster.fencing import FencedConnector, LeaseDeadline
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import ServiceBusy
from ult_actors.messages import Cancel, Order, OrderReply, OrderRequest, Submit
from ult_actors.service import Service, build_service

_ids = itertools.count(1)


class CountingPaper(PaperConnector):
    """The real paper connector, counting the changes it was asked to send."""

    def __init__(self, sent: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = sent

    async def submit(self, request: OrderRequest) -> Order:
        self.sent.append(f"submit {request.client_order_id}")
        return await super().submit(request)

    async def cancel(self, order_id: str) -> Order:
        self.sent.append(f"cancel {order_id}")
        return await super().cancel(order_id)


@asynccontextmanager
async def fenced_service(
    tmp_path: Path, lease: LeaseDeadline
) -> AsyncIterator[tuple[Service, list[str]]]:
    settings = PaperSettings(
        tick_interval_s=0,
        slippage_bps=Decimal(0),
        size_impact_bps_per_share=Decimal(0),
        commission_per_share=Decimal(0),
        start_prices={"AAPL": Decimal(100)},
        state_path=str(tmp_path / "paper.db"),
    )
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(tmp_path)),
        brokers=[BrokerEntry(name="paper", kind="paper", enabled=True, settings=settings)],
    )
    sent: list[str] = []

    svc = build_service(
        cfg,
        env={},
        rng=random.Random(5),
        now_ns=lambda: NOW_NS,
        connector_factories={
            "paper": lambda: CountingPaper(sent, "paper", settings, now_ns=lambda: NOW_NS)
        },
        lease=lease,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        yield svc, sent
        nursery.cancel_scope.cancel()


async def _submit(svc: Service, **fields: Any) -> Order:
    reply = await svc.gateway.handle(Submit(id=next(_ids), order=req(**fields)))
    assert isinstance(reply, OrderReply)
    return reply.order


async def test_a_lapsed_lease_sends_no_order_and_no_cancel(tmp_path: Path) -> None:
    lease = LeaseDeadline(margin_s=0.5)
    lease.held_until(trio.current_time() + 60)
    async with fenced_service(tmp_path, lease) as (svc, sent):
        with trio.fail_after(10):
            working = await _submit(svc, type="limit", limit_price=Decimal(50), client_order_id="w")
        assert working.status == "accepted"
        assert sent == ["submit w"]
        # The renewals stopped (a pause): the deadline, less its margin, is now past.
        lease.held_until(trio.current_time() + 0.4)
        with trio.fail_after(10), pytest.raises(ServiceBusy) as refused:
            await _submit(svc, client_order_id="late")
        assert refused.value.code == "busy"
        assert "cluster lease may have run out" in refused.value.message
        with trio.fail_after(10), pytest.raises(ServiceBusy):
            await svc.gateway.handle(Cancel(id=next(_ids), order_id=working.id))
        assert sent == ["submit w"]  # nothing left after the lease lapsed
        late = await (await svc.journal.get()).get("late")
        assert late is not None and late.status == "pending_new"  # for the new active


async def test_a_held_lease_sends_as_usual(tmp_path: Path) -> None:
    lease = LeaseDeadline(margin_s=0.5)
    lease.held_until(trio.current_time() + 60)
    async with fenced_service(tmp_path, lease) as (svc, sent):
        with trio.fail_after(10):
            order = await _submit(svc, client_order_id="m")
        assert order.status == "filled"
        assert sent == ["submit m"]


class Venue:
    """Stands in for a connector: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def replace(self, order: object, change: object) -> str:
        self.calls.append("replace")
        return "replaced"

    async def submit_list(self, request: object) -> str:
        self.calls.append("submit_list")
        return "placed"


async def test_replace_and_lists_are_fenced_too() -> None:
    venue = Venue()
    lease = LeaseDeadline(margin_s=0.5)
    fenced = FencedConnector(venue, lease)  # type: ignore[arg-type]
    with pytest.raises(ServiceBusy):
        await fenced.replace(None, None)
    with pytest.raises(ServiceBusy):
        await fenced.submit_list(None)
    assert venue.calls == []
    lease.held_until(trio.current_time() + 60)
    assert await fenced.replace(None, None) == "replaced"
    assert await fenced.submit_list(None) == "placed"
    assert venue.calls == ["replace", "submit_list"]
