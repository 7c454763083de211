"""IB connector across gaps (issue 18): a silent TWS, fills never pushed, fills while away.

Real loopback sockets to the TWS simulator. Time is trio's: the silence test
runs on the autojump clock, so ``stale_after_s`` is the real default and the
detection time is measured, not waited for.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from tests.brokers.contract import UpdateLog
from tests.brokers.ib.harness import BOUND, gtc_limit, running_sim, settings
from ult_actors.brokers.budget import RateBudget, charged_as
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.ledger import ExecutionLedger
from ult_actors.brokers.ib.order_ids import OrderIdSequence
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import OrderUpdate
from ult_actors.sim.ib import TwsSimulator


class Incarnations:
    """Connectors of one configured connection: shared order ids and ledger, as the kind makes them."""

    def __init__(self, sim: TwsSimulator, **overrides: Any) -> None:
        self.sim = sim
        self.overrides = overrides
        self.order_ids = OrderIdSequence()
        self.ledger = ExecutionLedger()

    def make(self) -> IbConnector:
        return IbConnector(
            "ib",
            settings(self.sim.port, **self.overrides),
            order_ids=self.order_ids,
            ledger=self.ledger,
        )


class Ended:
    """How a connector's stream ended, once it has."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.event = trio.Event()

    async def wait(self) -> BaseException | None:
        await self.event.wait()
        return self.error


@asynccontextmanager
async def streaming(
    connector: IbConnector, log: UpdateLog, ended: Ended | None = None
) -> AsyncIterator[trio.Nursery]:
    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await connector.stream_updates(log.sink, task_status=task_status)
        except BrokerUnavailable as exc:
            if ended is not None:
                ended.error = exc
        finally:
            if ended is not None:
                ended.event.set()

    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            await connector.connect()
        await nursery.start(run)
        yield nursery
        with contextlib.suppress(BrokerUnavailable):
            await connector.disconnect()
        nursery.cancel_scope.cancel()


async def test_a_silent_tws_is_dropped_within_twice_stale_after_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_sim() as sim:
        connector = IbConnector("ib", settings(sim.port))  # stale_after_s 30, probe 5
        stale = connector.settings.stale_after_s
        ended = Ended()
        async with streaming(connector, UpdateLog(), ended):
            await connector.open_orders()  # the last message TWS sends
            sim.faults.silent = True
            silent_from = trio.current_time()
            with trio.fail_after(10 * stale):
                error = await ended.wait()
            detected_s = trio.current_time() - silent_from
    assert "did not answer a probe" in str(error)
    assert stale <= detected_s <= 2 * stale


async def test_a_chatty_idle_tws_is_probed_and_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_sim() as sim:
        connector = IbConnector("ib", settings(sim.port, stale_after_s=2.0))
        ended = Ended()
        async with streaming(connector, UpdateLog(), ended):
            await trio.sleep(60)  # thirty quiet spells, each answered
            assert connector.last_message_at is not None
            assert trio.current_time() - connector.last_message_at <= 2.0
            await connector.open_orders()
            assert not ended.event.is_set()


async def test_a_fill_tws_never_pushed_is_fetched_once_with_its_commission() -> None:
    async with running_sim() as sim:
        connector = IbConnector("ib", settings(sim.port))
        log = UpdateLog()
        async with streaming(connector, log):
            price = sim.exchange.price("AAPL")
            order = await connector.submit(gtc_limit("drop-1", price + 1))  # marketable: fills
            sim.faults.drop_executions = True
            resting = await connector.submit(gtc_limit("drop-2", price - 5))
            await sim.execute(1, int(resting.id), Decimal(4))  # no execDetails pushed
            fill = await log.wait_for(lambda u: u.fill is not None and u.order.id == resting.id)
            await connector.open_orders()  # anything repeated would have come by now
        fills = [u.fill for u in log.updates if u.fill is not None]
    assert [(f.client_order_id, f.qty) for f in fills] == [
        ("drop-1", Decimal(10)),
        ("drop-2", Decimal(4)),
    ]
    assert fill.fill is not None and fill.fill.commission is not None
    assert fill.order.filled_qty == Decimal(4) and order.client_order_id == "drop-1"


async def test_after_a_drop_the_next_stream_first_delivers_each_fill_no_incarnation_did() -> None:
    async with running_sim() as sim:
        line = Incarnations(sim)
        first, log = line.make(), UpdateLog()
        price = sim.exchange.price("AAPL")
        ended = Ended()
        async with streaming(first, log, ended):
            heard = await first.submit(gtc_limit("gap-1", price - 5))
            away = await first.submit(gtc_limit("gap-2", price - 6, qty=3))
            await sim.execute(1, int(heard.id), Decimal(2))
            await log.wait_for(lambda u: u.fill is not None)  # delivered by the stream
            await sim.drop_connections()
            await ended.wait()
        # While no one listens: a partial fill of one, the whole of the other.
        await sim.execute(1, int(heard.id), Decimal(5))
        await sim.execute(1, int(away.id), Decimal(3))
        second, log = line.make(), UpdateLog()
        async with streaming(second, log):  # started: what was missed is delivered
            missed = list(log.updates)
            await second.open_orders()  # anything repeated would have come by now
        third, again = line.make(), UpdateLog()
        async with streaming(third, again):
            await third.open_orders()
    got = [(u.order.client_order_id, u.fill.qty, u.order.status) for u in missed if u.fill]
    assert got == [
        ("gap-1", Decimal(5), "partially_filled"),
        ("gap-2", Decimal(3), "filled"),
    ]
    assert all(u.fill is not None and u.fill.commission is not None for u in missed)
    assert [u for u in log.updates + again.updates if u.fill is not None] == missed


async def test_a_fill_whose_delivery_crashed_is_delivered_again_by_the_next_incarnation() -> None:
    # The sink is the broker actor applying the fill (journal, risk, positions):
    # one that raises is an actor crashing halfway, before the books have it.
    async with running_sim() as sim:
        line = Incarnations(sim)
        first = line.make()
        price = sim.exchange.price("AAPL")
        ended = Ended()
        async with streaming(first, UpdateLog(), ended):
            order = await first.submit(gtc_limit("crash-1", price - 5))
            await sim.drop_connections()
            await ended.wait()
        await sim.execute(1, int(order.id), Decimal(10))  # while no one listens

        async def crash(update: OrderUpdate) -> None:
            raise RuntimeError("injected: broker actor crashed applying a fill")

        second = line.make()
        with trio.fail_after(BOUND):
            await second.connect()
        with (
            trio.fail_after(BOUND),
            pytest.RaisesGroup(
                pytest.RaisesExc(RuntimeError, match="injected"), flatten_subgroups=True
            ),
        ):
            await second.stream_updates(crash)
        await second.disconnect()
        third, log = line.make(), UpdateLog()
        async with streaming(third, log):
            await third.open_orders()
        fourth, again = line.make(), UpdateLog()
        async with streaming(fourth, again):
            await fourth.open_orders()
    fills = [u.fill for u in log.updates + again.updates if u.fill is not None]
    assert [(f.client_order_id, f.qty) for f in fills] == [("crash-1", Decimal(10))]


async def test_1100_degrades_the_stream_cancels_still_go_and_1101_brings_it_back_in_step() -> None:
    async with running_sim() as sim:
        connector = IbConnector("ib", settings(sim.port))
        told: list[str | None] = []
        connector.watch_stream(told.append)
        log = UpdateLog()
        async with streaming(connector, log):
            price = sim.exchange.price("AAPL")
            working = await connector.submit(gtc_limit("deg-1", price - 5))
            await sim.connectivity_lost()
            await connector.open_orders()  # answered after the 1100 was read
            assert told == ["TWS lost its connection to IB (1100)"]
            canceled = await connector.cancel(working.id)  # TWS keeps it for the restore
            assert canceled.status == "pending_cancel"
            resynced = connector.resynced
            await sim.connectivity_restored(data_lost=True)
            with trio.fail_after(BOUND):
                await resynced.wait()
            await log.wait_for(lambda u: u.order.id == working.id and u.order.status == "canceled")
    assert told == ["TWS lost its connection to IB (1100)", None]


async def test_a_saturating_burst_stays_under_tws_limit_through_the_budget_and_a_cancel_goes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = TwsSimulator(tick_interval_s=None, max_messages_per_s=10)
    async with trio.open_nursery() as outer:
        await outer.start(sim.serve)
        # The connection's own pacing is out of the way: only the budget keeps the rate.
        connector = IbConnector("ib", settings(sim.port, max_messages_per_second=1000))
        budget = RateBudget("ib", rate_per_s=7.0, burst=2, query_reserve=0)
        connector.use_budget(budget)
        async with streaming(connector, UpdateLog()):
            price = sim.exchange.price("AAPL")
            with charged_as("order"):  # as the broker actor pays for a command
                await budget.prepay("order")
                working = await connector.submit(gtc_limit("sat-1", price - 5))
            answered: list[int] = []

            async def pull(i: int) -> None:
                await connector.positions()  # two messages: the request and its cancel
                answered.append(i)

            async with trio.open_nursery() as burst:
                for i in range(20):
                    burst.start_soon(pull, i)
                await trio.lowlevel.checkpoint()  # every pull queued for the budget
                with charged_as("cancel"):  # ahead of every query waiting
                    await budget.prepay("cancel")
                    canceled = await connector.cancel(working.id)
                pulls_before_the_cancel = len(answered)
        outer.cancel_scope.cancel()
    assert canceled.status == "canceled"
    assert pulls_before_the_cancel < 5  # it did not wait behind the queued pulls
    assert len(answered) == 20
    assert sim.rate_violations == 0
