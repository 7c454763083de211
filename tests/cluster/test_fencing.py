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

from tests.actors.harness import NOW_NS, exact_paper_settings, req
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.cluster.fencing import FencedConnector, LeaseDeadline
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import ServiceBusy
from ult_actors.messages import (
    Cancel,
    OkReply,
    Order,
    OrderReply,
    OrderRequest,
    Replace,
    ReplaceRequest,
    SetKillSwitch,
    Submit,
)
from ult_actors.service import Service, build_service

_ids = itertools.count(1)


class CountingPaper(PaperConnector):
    """The real paper connector, counting the changes it was asked to send."""

    def __init__(
        self, sent: list[str], *args: Any, count_reads: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sent = sent
        self.count_reads = count_reads

    async def submit(self, request: OrderRequest) -> Order:
        self.sent.append(f"submit {request.client_order_id}")
        return await super().submit(request)

    async def cancel(self, order_id: str) -> Order:
        self.sent.append(f"cancel {order_id}")
        return await super().cancel(order_id)

    async def replace(self, order: Order, change: ReplaceRequest) -> Order:
        self.sent.append(f"replace {order.client_order_id}")
        return await super().replace(order, change)

    async def open_orders(self) -> list[Order]:
        if self.count_reads:
            self.sent.append("open orders read")
        return await super().open_orders()


@asynccontextmanager
async def fenced_service(
    tmp_path: Path, lease: LeaseDeadline, settle_grace_s: float = 2.0, count_reads: bool = False
) -> AsyncIterator[tuple[Service, list[str]]]:
    settings = exact_paper_settings(state_path=str(tmp_path / "paper.db"))
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
            "paper": lambda: CountingPaper(
                sent, "paper", settings, count_reads=count_reads, now_ns=lambda: NOW_NS
            )
        },
        lease=lease,
        reconcile=ReconcilePolicy(settle_grace_s=settle_grace_s),
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


async def test_a_lapsed_lease_refuses_a_replace_and_the_kill_switch_at_once(
    tmp_path: Path,
) -> None:
    lease = LeaseDeadline(margin_s=0.5)
    lease.held_until(trio.current_time() + 60)
    # A settle grace of an hour: a refusal that waited for it would fail the test.
    fenced = fenced_service(tmp_path, lease, settle_grace_s=3600, count_reads=True)
    async with fenced as (svc, sent):
        with trio.fail_after(10):
            working = await _submit(svc, type="limit", limit_price=Decimal(50), client_order_id="w")
        lease.held_until(trio.current_time() + 0.4)
        before = list(sent)  # the start's reconciliation read the open orders
        change = ReplaceRequest(order_id=working.id, limit_price=Decimal(51), client_order_id="w2")
        with trio.fail_after(10), pytest.raises(ServiceBusy) as refused:
            await svc.gateway.handle(Replace(id=next(_ids), change=change))
        assert "cluster lease may have run out" in refused.value.message
        store = await svc.journal.get()
        assert await store.get("w2") is None  # nothing journaled for a replace never sent
        kept = await store.get("w")
        assert kept is not None and kept.status == "accepted"
        with trio.fail_after(10):  # the kill switch: the cancels would all be refused
            answer = await svc.gateway.handle(SetKillSwitch(id=next(_ids), on=True))
        assert isinstance(answer, OkReply) and answer.detail == "halted; 0 orders canceled"
        assert sent == before  # no replace, no cancel, not even the open orders read


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


def test_the_fence_offers_no_plain_answer_that_would_skip_its_lease_check() -> None:
    class AnswersAtOnceVenue(Venue):
        answers_now = True

        def answer_now(self, request: Any, *, validated: bool) -> Any:
            raise AssertionError("sent past the fence")

    fenced = FencedConnector(AnswersAtOnceVenue(), LeaseDeadline(margin_s=0.5))  # type: ignore[arg-type]
    assert fenced.answers_now is False
