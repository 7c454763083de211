"""The real service as a subprocess, driven by both clients over its socket."""

from __future__ import annotations

import asyncio
import collections
import os
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import trio
import trio.testing

from ult_actors.client import (
    AsyncClient,
    BadRequest,
    Client,
    InvalidOrder,
    NotFound,
    RiskRejected,
    ServiceUnreachable,
    order_request,
)
from ult_actors.messages import Order, OrderRequest, OrderUpdate
from ult_actors.testing.process import UltProcess

RICH = {"PAPER_STARTING_CASH": "100000000"}


@pytest.fixture(scope="module")
def service() -> Iterator[UltProcess]:
    svc = UltProcess.serve(env=RICH).start()
    yield svc
    code = svc.stop()
    svc.cleanup()
    assert code == 0, "the service did not stop cleanly on SIGTERM"


def test_the_blocking_client_places_finds_lists_and_cancels_orders(
    service: UltProcess,
) -> None:
    with Client(service.socket, timeout=20) as c:
        filled = c.submit("AAPL", "buy", 10, wait=True)
        assert filled.status == "filled" and filled.filled_qty == 10
        resting = c.submit("MSFT", "buy", 5, type="limit", limit_price="1.00",
                           time_in_force="gtc", client_order_id="e2e-rest-1")  # fmt: skip
        assert resting.status in ("accepted", "pending_new")
        assert c.order("e2e-rest-1").id == resting.id == c.order(resting.id).id
        assert "e2e-rest-1" in [o.client_order_id for o in c.orders(open=True)]
        assert c.cancel("e2e-rest-1").status in ("canceled", "pending_cancel")
        assert "e2e-rest-1" not in [o.client_order_id for o in c.orders(open=True)]
        assert any(p.symbol == "AAPL" and p.qty >= 10 for p in c.positions())
        (account,) = c.account()
        assert account.broker == "paper" and account.cash > 0
        names = {a.name for a in c.health().actors}
        assert {"ult", "journal", "brokers", "broker.paper", "router", "risk", "ipc"} <= names
        with pytest.raises(InvalidOrder) as info:
            c.submit("AAPL", "buy", 1, type="limit")
        assert info.value.field == "limit_price"
        with pytest.raises(NotFound):
            c.order("no-such-order")


def test_one_blocking_client_pipelines_a_batch_each_answered_once(service: UltProcess) -> None:
    batch = [order_request("IBM", "buy", 1, client_order_id=f"e2e-batch-{i}") for i in range(500)]
    with Client(service.socket, timeout=30) as c:
        results = c.submit_many(batch, window=128)
    assert all(isinstance(r, Order) for r in results)
    assert [r.client_order_id for r in results] == [o.client_order_id for o in batch]  # type: ignore[union-attr]
    assert len({r.id for r in results}) == 500  # type: ignore[union-attr]


async def test_the_async_client_on_trio_many_tasks_and_an_event_stream(
    service: UltProcess,
) -> None:
    async with AsyncClient(service.socket, timeout=20) as watcher:
        events = await watcher.subscribe(["orders"])
        async with AsyncClient(service.socket, timeout=20) as trader:
            orders: list[Order] = []

            async def one(i: int) -> None:
                orders.append(
                    await trader.submit("AAPL", "buy", 1, client_order_id=f"e2e-trio-{i}")
                )

            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    for i in range(100):
                        nursery.start_soon(one, i)
            assert len({o.client_order_id for o in orders}) == 100
            assert trader.unmatched_replies == 0
        filled: set[str] = set()
        with trio.fail_after(20):
            async for event in events:
                assert isinstance(event, OrderUpdate)
                coid = event.order.client_order_id
                if coid.startswith("e2e-trio-") and event.order.status == "filled":
                    filled.add(coid)
                    if len(filled) == 100:
                        break


class _TaskSteps(trio.abc.Instrument):
    """Counts the steps each task of this trio run takes while installed."""

    def __init__(self) -> None:
        self.steps: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name] += 1


async def test_a_lone_request_is_sent_and_read_by_its_caller_alone(service: UltProcess) -> None:
    # One request at a time is the latency path: no other task of the client may have to
    # run for it (each is a scheduler round and the CPU of a wake-up). The service runs in
    # its own process, so every other task of this run belongs to the client.
    async with AsyncClient(service.socket, timeout=20) as c:
        await c.ping()
        await trio.testing.wait_all_tasks_blocked()  # the connection's own tasks have started
        caller = trio.lowlevel.current_task()
        steps = _TaskSteps()
        trio.lowlevel.add_instrument(steps)
        try:
            for _ in range(10):
                await c.ping()
                await c.submit("AAPL", "buy", 1)
        finally:
            trio.lowlevel.remove_instrument(steps)
    assert steps.steps[caller.name] >= 20
    assert {name: n for name, n in steps.steps.items() if name != caller.name} == {}


async def test_a_request_that_cannot_be_encoded_is_refused_by_name_and_nothing_is_left_behind(
    service: UltProcess,
) -> None:
    unsendable = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), broker=object())  # type: ignore[arg-type]
    async with AsyncClient(service.socket, timeout=20) as c:
        with pytest.raises(BadRequest, match="cannot send this Submit"):
            await c.submit_request(unsendable)
        await trio.testing.wait_all_tasks_blocked()
        caller = trio.lowlevel.current_task()
        steps = _TaskSteps()
        trio.lowlevel.add_instrument(steps)
        try:
            order = await c.submit("AAPL", "buy", 1)
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert order.status == "filled"
        # No waiter was left for it: the next request is still alone on the connection.
        assert {name for name in steps.steps if name != caller.name} == set()
    with Client(service.socket, timeout=20) as blocking:
        with pytest.raises(BadRequest, match="cannot send this Submit"):
            blocking.submit_many([unsendable])
        assert blocking.submit("AAPL", "buy", 1).status == "filled"


def test_the_async_client_works_on_asyncio_too(service: UltProcess) -> None:
    async def main() -> tuple[list[Order], str]:
        async with AsyncClient(service.socket, timeout=20) as c:
            orders = await asyncio.wait_for(
                asyncio.gather(*(c.submit("AAPL", "sell", 1) for _ in range(20))), 30
            )
            health = await c.health()
            return list(orders), health.trading_state

    orders, state = asyncio.run(main())
    assert len({o.id for o in orders}) == 20 and state == "active"


def test_the_kill_switch_halts_then_resumes_trading(service: UltProcess) -> None:
    with Client(service.socket, timeout=20) as c:
        c.kill_switch(True)
        try:
            with pytest.raises(RiskRejected, match="halted"):
                c.submit("AAPL", "buy", 1)
            assert c.health().trading_state == "halted"
        finally:
            c.kill_switch(False)
        assert c.submit("AAPL", "buy", 1).status != "rejected"


def test_the_socket_of_the_real_service_is_private(service: UltProcess) -> None:
    assert stat.S_IMODE(os.stat(service.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(service.socket.parent).st_mode) == 0o700


def test_a_client_without_a_service_names_the_socket_it_tried(tmp_path: Path) -> None:
    missing = Path("/tmp") / f"ult-none-{os.getpid()}" / "ult.sock"
    with pytest.raises(ServiceUnreachable, match=str(missing)), Client(missing):
        pass
