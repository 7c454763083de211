"""A new order's broker step run by the order's own task (the gateway's), for the paper venue.

Once the router's step (run by the asker) hands the order on, the asker runs
the broker actor's step for it too, while an order worker is idle and nothing
waits in the broker's mailbox. The broker actor's rules still hold: a bug
there crashes the broker actor (restarted; the order placed once), a
reconnect cancels the step and redelivers the order, the asker's deadline
bounds its wait, and a cancel queued first is not overtaken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.actors.harness import NOW_NS, journaled, paper_service, submit
from ult_actors.actors.commands import CancelOrder
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.errors import Internal, Timeout
from ult_actors.messages import Order, OrderRequest
from ult_actors.runtime.mailbox import ReplySlot

Submit = Callable[[PaperConnector, OrderRequest], Awaitable[Order]]


def _broker(svc: Any) -> Any:
    return svc.root.child("brokers").spec.supervisor.child("broker.paper")


async def _restarted(svc: Any) -> None:
    with trio.fail_after(10):
        while _broker(svc).health.restarts < 1 or _broker(svc).health.state != "running":
            await trio.sleep(0.01)


async def _held_qty(connector: PaperConnector) -> Decimal:
    return sum((p.qty for p in await connector.positions() if p.symbol == "AAPL"), Decimal(0))


Then = Callable[[int, Submit, PaperConnector, OrderRequest], Awaitable[Order]]


async def _plain(_n: int, real: Submit, connector: PaperConnector, r: OrderRequest) -> Order:
    return await real(connector, r)


def _watch_submits(
    monkeypatch: pytest.MonkeyPatch, then: Then = _plain
) -> list[tuple[trio.lowlevel.Task, str]]:
    """Each paper submit's task and client order id, in order; ``then(n, real, ...)``
    runs the n-th (0-based)."""
    real: Submit = PaperConnector.submit
    tasks: list[tuple[trio.lowlevel.Task, str]] = []

    async def watched(self: PaperConnector, request: OrderRequest) -> Order:
        assert request.client_order_id is not None
        tasks.append((trio.lowlevel.current_task(), request.client_order_id))
        return await then(len(tasks) - 1, real, self, request)

    monkeypatch.setattr(PaperConnector, "submit", watched)
    return tasks


async def test_a_new_order_s_broker_step_runs_in_its_own_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, _made):
        await submit(svc, qty=1)  # the router and the broker are idle from now on
        tasks = _watch_submits(monkeypatch)
        assert (await submit(svc, qty=2)).status == "filled"
        assert [task for task, _coid in tasks] == [trio.lowlevel.current_task()]


async def test_a_bug_in_the_step_crashes_the_broker_actor_and_the_order_is_placed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, made):
        await submit(svc, qty=1)

        async def buggy_after_placing(
            n: int, real: Submit, c: PaperConnector, r: OrderRequest
        ) -> Order:
            order = await real(c, r)
            if n == 0:
                raise ZeroDivisionError("a bug")
            return order

        tasks = _watch_submits(monkeypatch, buggy_after_placing)
        with pytest.raises(Internal) as info:
            await submit(svc, qty=7)
        [(task, coid)] = tasks
        assert task is trio.lowlevel.current_task()  # run in the asker's task
        assert "crashed actor broker.paper (ZeroDivisionError)" in info.value.message
        await _restarted(svc)
        # The next incarnation settled the order from the venue: placed once, filled.
        assert (await journaled(svc, coid, "filled")).filled_qty == 7
        assert len(tasks) == 1
        assert await _held_qty(made["paper"][-1]) == 8
        assert (await submit(svc, qty=1)).status == "filled"
        assert await _held_qty(made["paper"][-1]) == 9
        for other in ("journal", "positions", "risk", "router"):
            assert svc.root.child(other).health.restarts == 0, other


async def test_a_reconnect_during_the_step_cancels_it_and_the_order_is_redelivered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, made):
        await submit(svc, qty=1)

        async def dropped_while_sending(
            n: int, real: Submit, connector: PaperConnector, r: OrderRequest
        ) -> Order:
            if n == 0:
                connector._fail(RuntimeError("connection dropped"))  # the stream ends
                await trio.sleep_forever()  # cancelled by the incarnation's end
            return await real(connector, r)

        tasks = _watch_submits(monkeypatch, dropped_while_sending)
        order = await submit(svc, qty=5)
        # The asker kept waiting; the next incarnation's worker placed the order once.
        assert order.status == "filled"
        assert [coid for _task, coid in tasks] == [order.client_order_id] * 2
        assert tasks[0][0] is trio.lowlevel.current_task()
        assert tasks[1][0] is not trio.lowlevel.current_task()
        assert _broker(svc).health.restarts == 1
        assert await _held_qty(made["paper"][-1]) == 6
        assert (await journaled(svc, order.client_order_id, "filled")).filled_qty == 5


async def test_the_asker_s_deadline_bounds_its_wait_for_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, made):
        await submit(svc, qty=1)

        async def stuck(n: int, real: Submit, connector: PaperConnector, r: OrderRequest) -> Order:
            if n == 0:
                await trio.sleep(60)  # a venue that does not answer in time
            return await real(connector, r)

        tasks = _watch_submits(monkeypatch, stuck)
        with trio.fail_after(10), pytest.raises(Timeout):
            await submit(svc, qty=5, deadline_ns=NOW_NS + 200_000_000)
        assert [task for task, _coid in tasks] == [trio.lowlevel.current_task()]
        # The broker actor goes on: its worker slot is free again, nothing restarted.
        assert (await submit(svc, qty=2)).status == "filled"
        assert _broker(svc).health.restarts == 0
        assert await _held_qty(made["paper"][-1]) == 3


async def test_the_asker_s_cancellation_does_not_cut_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, made):
        await submit(svc, qty=1)
        parked, answer = trio.Event(), trio.Event()

        async def answered_after_the_asker_left(
            n: int, real: Submit, connector: PaperConnector, r: OrderRequest
        ) -> Order:
            if n == 0:
                parked.set()
                await answer.wait()  # the step parks here, journaled and not sent yet
            return await real(connector, r)

        tasks = _watch_submits(monkeypatch, answered_after_the_asker_left)
        asker = trio.CancelScope()
        asker_task: list[trio.lowlevel.Task] = []

        async def ask() -> None:
            asker_task.append(trio.lowlevel.current_task())
            with asker:
                await submit(svc, qty=5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await parked.wait()
            asker.cancel()  # the client went away while its order's step waits
            answer.set()
        # The asker stopped waiting; its step went on in its task: the order placed once.
        assert asker.cancelled_caught
        [(task, coid)] = tasks
        assert asker_task == [task]  # run by the asker's own task
        assert (await journaled(svc, coid, "filled")).filled_qty == 5
        assert await _held_qty(made["paper"][-1]) == 6
        assert _broker(svc).health.restarts == 0
        assert (await submit(svc, qty=1)).status == "filled"


async def test_a_queued_cancel_is_not_overtaken_by_a_new_order_s_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, made):
        resting = await submit(svc, qty=1, limit_price=90)  # below the market: it rests
        assert resting.status == "accepted"
        mailbox = svc.brokers["paper"]
        tasks = _watch_submits(monkeypatch)
        # The cancel waits in the broker's mailbox (its task not run yet) as the order comes.
        slot = ReplySlot()
        mailbox.send_nowait(CancelOrder(order_id=resting.id), reply=slot)
        assert (await submit(svc, qty=2)).status == "filled"
        with trio.fail_after(10):
            canceled = await slot.wait()
        assert canceled.status == "canceled"
        # Sent, not run by the asker: the broker's tasks take the cancel and the order as
        # they would without the door (the cancel's lane is read first).
        assert tasks[0][0] is not trio.lowlevel.current_task()
        assert await _held_qty(made["paper"][-1]) == 2
