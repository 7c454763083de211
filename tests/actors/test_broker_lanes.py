"""A broker actor's queries and cancels never wait behind its queued new orders.

The real paper broker, made slow: its submits wait at a gate while thousands
of orders queue up in its mailbox. An account query over the real socket, the
positions actor's own position pull, and a cancel are each answered while
the queue stands, and risk never restricts the broker for a missing report.
Then the kill switch: orders still queued when it arrives are refused, never
placed after it.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.service_harness import one_broker_config, served
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.client import AsyncClient
from ult_actors.errors import RiskRejected
from ult_actors.messages import Order, OrderRequest, SetKillSwitch, Submit
from ult_actors.service import Service, build_service

#: Far more orders than the broker actor submits at once (64): the rest queue in its mailbox.
QUEUED = 2_000
#: The kill switch test refuses every queued order in its own answer: half as many keep
#: that answer well inside its bound on a loaded 2-core machine, still 15x what is in flight.
QUEUED_FOR_KILL = 1_000


class SlowPaper(PaperConnector):
    """The real paper connector; submits wait while ``gate`` is closed."""

    gate = trio.Event()

    async def submit(self, request: OrderRequest) -> Order:
        await SlowPaper.gate.wait()
        return await super().submit(request)


@pytest.fixture
def state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ult-l", dir="/tmp"))  # short: the socket lives here
    yield path
    shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def jammed_service(state: Path) -> AsyncIterator[tuple[Service, AsyncClient]]:
    SlowPaper.gate = trio.Event()
    SlowPaper.gate.set()  # open until the test jams it
    settings = PaperSettings(
        tick_interval_s=0, state_path=str(state / "paper.db"), starting_cash=Decimal(10**9)
    )
    cfg = one_broker_config(state, "paper", settings)
    cfg.positions.sync_interval_s = 0.1
    cfg.risk.max_orders_per_second = 1_000_000
    svc = build_service(
        cfg,
        env={},
        rng=random.Random(3),
        connector_factories={"paper": lambda: SlowPaper("paper", settings)},
        reconcile=ReconcilePolicy(settle_grace_s=0.05),
    )
    async with served(svc, state) as client:
        yield svc, client
        SlowPaper.gate.set()


async def queue_orders(
    svc: Service, nursery: trio.Nursery, answers: list[object], count: int = QUEUED
) -> None:
    """Send ``count`` market orders; return once most of them wait in the broker's mailbox."""

    async def one(i: int) -> None:
        request = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"q-{i}")
        try:
            answers.append(await svc.gateway.handle(Submit(id=i, order=request)))
        except Exception as exc:  # the kill switch test expects refusals
            answers.append(exc)

    SlowPaper.gate = trio.Event()  # jammed: every submit from now on waits
    for i in range(count):
        nursery.start_soon(one, i)
    with trio.fail_after(30):
        while svc.brokers["paper"].depth < count - 100:
            await trio.sleep(0.01)


def restricted(svc: Service) -> dict[str, str]:
    return {b: s for b, s in svc.risk_state.broker_trading.items() if s != "active"}


async def test_queries_and_cancels_are_answered_while_thousands_of_orders_wait(
    state: Path,
) -> None:
    async with jammed_service(state) as (svc, client):
        resting = await client.submit(
            "MSFT", "buy", 1, type="limit", limit_price="1.00", time_in_force="gtc",
            client_order_id="rest-1",
        )  # fmt: skip
        answers: list[object] = []
        async with trio.open_nursery() as nursery:
            await queue_orders(svc, nursery, answers)
            jammed_at = time.time_ns()
            with trio.fail_after(5):  # well under the 10 s at which a position report times out
                (account,) = await client.account("paper")
                assert account.cash > 0
                assert (await client.order("rest-1")).id == resting.id
                assert (await client.cancel("rest-1")).status == "canceled"
            with trio.fail_after(5):  # the positions actor's own pull gets through too
                while svc.book.synced_at.get("paper", 0) <= jammed_at:
                    await trio.sleep(0.01)
            assert svc.brokers["paper"].depth > QUEUED // 2  # the orders still wait
            assert restricted(svc) == {} and svc.risk_state.trading == "active"
            SlowPaper.gate.set()
        assert len(answers) == QUEUED
        assert [a for a in answers if getattr(a, "order", None) is None][:3] == []
        assert restricted(svc) == {}


async def test_the_kill_switch_refuses_orders_still_queued_instead_of_placing_them_after(
    state: Path,
) -> None:
    async with jammed_service(state) as (svc, _client):
        answers: list[object] = []
        async with trio.open_nursery() as nursery:
            await queue_orders(svc, nursery, answers, QUEUED_FOR_KILL)
            with trio.fail_after(8):  # not behind the queue (its own call gives up at 10 s)
                reply = await svc.gateway.handle(SetKillSwitch(id=1, on=True))
            assert "halted" in str(reply)
            SlowPaper.gate.set()  # the few already being sent still land
        refused = [a for a in answers if isinstance(a, RiskRejected)]
        placed = [a for a in answers if getattr(a, "order", None) is not None]
        assert len(refused) + len(placed) == QUEUED_FOR_KILL
        assert len(placed) <= 64  # only those already being sent (the actor's concurrency)
        unsent = [r for r in refused if "not placed" in r.message]  # the rest never left risk
        assert len(unsent) >= QUEUED_FOR_KILL // 2
        store = await svc.journal.get()
        for error in unsent[:20]:
            coid = error.message.split("before order ")[1].split()[0]
            journaled = await store.get(coid)
            assert journaled is not None and journaled.status == "rejected", coid
            assert journaled.id == ""  # never sent: the venue has no record of it
