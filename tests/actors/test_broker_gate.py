"""The order gate of a broker connection that is back but not yet in step (issue 18 §1).

The real paper broker behind the whole tree. Its update stream is dropped;
the actor restarts, connects, and its ``resync`` waits until the test lets
it finish. Meanwhile a new order is held until the resync is over (``hold``)
or refused at once with ``broker_unavailable`` (``refuse``), never sent or
journaled half-way.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
import trio

from tests.actors.harness import NOW_NS, exact_paper_settings, req
from ult_actors.brokers.base import UpdateSink
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import Order, OrderReply, OrderUpdate, Submit
from ult_actors.service import Service, build_service

_ids = itertools.count(1)


class Reconnecting:
    """What the test controls across the connector's incarnations."""

    def __init__(self) -> None:
        self.drop = trio.Event()
        self.resyncing = trio.Event()
        self.resync_done = trio.Event()
        self.made = 0


class GappyPaper(PaperConnector):
    """The real paper connector; its first stream drops on cue, later resyncs wait."""

    def __init__(self, control: Reconnecting, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        control.made += 1
        self.control = control
        self.first = control.made == 1

    async def stream_updates(
        self, sink: UpdateSink, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(super().stream_updates, sink)
            task_status.started()
            if self.first:
                await self.control.drop.wait()
                raise BrokerUnavailable("paper stream dropped (test)")

    async def resync(self) -> list[OrderUpdate]:
        if not self.first:
            self.control.resyncing.set()
            await self.control.resync_done.wait()
        return []


@asynccontextmanager
async def gappy_service(
    tmp_path: Path, on_unavailable: Literal["hold", "refuse"]
) -> AsyncIterator[tuple[Service, Reconnecting]]:
    settings = exact_paper_settings(state_path=str(tmp_path / "paper.db"))
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(tmp_path)),
        brokers=[
            BrokerEntry(
                name="paper",
                kind="paper",
                enabled=True,
                settings=settings,
                on_unavailable=on_unavailable,
            )
        ],
    )
    control = Reconnecting()
    svc = build_service(
        cfg,
        env={},
        rng=random.Random(3),
        now_ns=lambda: NOW_NS,
        connector_factories={
            "paper": lambda: GappyPaper(control, "paper", settings, now_ns=lambda: NOW_NS)
        },
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        yield svc, control
        control.resync_done.set()
        nursery.cancel_scope.cancel()


async def _submit(svc: Service, **fields: Any) -> Order:
    request = req(**fields)
    reply = await svc.gateway.handle(Submit(id=next(_ids), order=request))
    assert isinstance(reply, OrderReply)
    return reply.order


async def _working_order_then_gap(svc: Service, control: Reconnecting) -> Order:
    """A resting limit order, then the stream drops and the next incarnation resyncs."""
    with trio.fail_after(10):
        working = await _submit(svc, type="limit", limit_price=Decimal(50))
        assert working.status == "accepted"
        control.drop.set()
        await control.resyncing.wait()
    return working


async def test_held_order_goes_out_once_the_resync_is_over(tmp_path: Path) -> None:
    async with gappy_service(tmp_path, "hold") as (svc, control):
        await _working_order_then_gap(svc, control)
        held: list[Order] = []

        async def send_during_gap() -> None:
            held.append(await _submit(svc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_during_gap)
            await trio.testing.wait_all_tasks_blocked()
            assert held == []  # held at the gate, not sent
            assert svc.health().connections["paper"].state == "resyncing"
            control.resync_done.set()
        assert len(held) == 1
        assert held[0].status == "filled"
        assert svc.health().connections["paper"].state == "ready"


async def test_refuse_answers_broker_unavailable_at_once(tmp_path: Path) -> None:
    async with gappy_service(tmp_path, "refuse") as (svc, control):
        await _working_order_then_gap(svc, control)
        with trio.fail_after(10), pytest.raises(BrokerUnavailable) as refused:
            await _submit(svc, client_order_id="gap-1")
        assert refused.value.code == "broker_unavailable"
        assert "on_unavailable = refuse" in refused.value.message
        control.resync_done.set()
        # After the resync the gate is open again: the same order goes through once.
        with trio.fail_after(10):
            while True:
                try:
                    order = await _submit(svc, client_order_id="gap-1")
                    break
                except BrokerUnavailable:
                    await trio.sleep(0.01)
        assert order.status == "filled"
