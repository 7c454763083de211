"""IB connector across gaps (issue 18): a silent TWS, fills never pushed, fills while away.

Real loopback sockets to the TWS simulator. Time is trio's: the silence test
runs on the autojump clock, so ``stale_after_s`` is the real default and the
detection time is measured, not waited for.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from tests.brokers.contract import UpdateLog
from tests.brokers.ib.harness import BOUND, gtc_limit, running_sim, settings
from ult_actors.brokers.budget import RateBudget, charged_as
from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.ledger import ExecutionLedger
from ult_actors.brokers.ib.order_ids import OrderIdSequence
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import OrderUpdate
from ult_actors.sim.ib import TwsSimulator
from ult_actors.sim.ib.server import filter_time


class Incarnations:
    """Connectors of one configured connection: shared order ids and ledger, as the kind makes them."""

    def __init__(self, sim: TwsSimulator, now_ns: Any = None, **overrides: Any) -> None:
        self.sim = sim
        self.now_ns = now_ns
        self.overrides = overrides
        self.order_ids = OrderIdSequence()
        self.ledger = ExecutionLedger()

    def make(self) -> IbConnector:
        return IbConnector(
            "ib",
            settings(self.sim.port, **self.overrides),
            order_ids=self.order_ids,
            ledger=self.ledger,
            **({} if self.now_ns is None else {"now_ns": self.now_ns}),
        )


def requests_sent(connector: IbConnector) -> list[wire.Request]:
    """Every request ``connector`` sends from now on, in order (it still sends them)."""
    asked: list[wire.Request] = []
    send = connector._session.send

    async def recording(request: wire.Request) -> None:
        asked.append(request)
        await send(request)

    connector._session.send = recording  # type: ignore[method-assign]
    return asked


@asynccontextmanager
async def on_a_wall_clock() -> AsyncIterator[tuple[TwsSimulator, WallClock, Incarnations]]:
    """A simulator and the incarnations of one connection, on one wall clock the test moves."""
    clock = WallClock()
    sim = TwsSimulator(tick_interval_s=None, now_ns=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        yield sim, clock, Incarnations(sim, now_ns=clock)
        nursery.cancel_scope.cancel()


class WallClock:
    """The wall clock (ns) of the simulator's executions and the connector's marks; the test moves it."""

    def __init__(self) -> None:
        self.now_ns = 1_780_000_000 * 10**9

    def __call__(self) -> int:
        return self.now_ns

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now_ns // 10**9, UTC)

    def advance(self, seconds: int) -> None:
        self.now_ns += seconds * 10**9


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


async def test_a_reconnect_asks_only_for_executions_since_the_gap_and_recovers_its_fill() -> None:
    async with on_a_wall_clock() as (sim, clock, line):
        first, log = line.make(), UpdateLog()
        price = sim.exchange.price("AAPL")
        ended = Ended()
        async with streaming(first, log, ended):
            order = await first.submit(gtc_limit("since-1", price - 5))
            await sim.execute(1, int(order.id), Decimal(2))
            executed_before = clock.at()
            await log.wait_for(lambda u: u.fill is not None)  # heard and delivered
            clock.advance(600)
            await first.open_orders()  # TWS's last word before the gap
            gap_began = clock.at()
            await sim.drop_connections()
            await ended.wait()
        clock.advance(300)
        await sim.execute(1, int(order.id), Decimal(3))  # while no one listens
        second, again = line.make(), UpdateLog()
        asked = requests_sent(second)
        async with streaming(second, again):
            await second.open_orders()  # anything repeated would have come by now
    # One request for executions, filtered from the gap (less the margin for clock skew):
    # the execution heard before it was not asked for again.
    (since,) = [filter_time(r.filter.time) for r in asked if isinstance(r, wire.ReqExecutions)]
    assert since is not None and executed_before < since <= gap_began
    fills = [(u.fill.qty, u.order.filled_qty, u.order.status) for u in again.updates if u.fill]
    assert fills == [(Decimal(3), Decimal(5), "partially_filled")]


async def test_an_incarnation_that_never_got_in_step_does_not_move_where_the_gap_began() -> None:
    async with on_a_wall_clock() as (sim, clock, line):
        first, ended = line.make(), Ended()
        async with streaming(first, UpdateLog(), ended):
            order = await first.submit(gtc_limit("gone-1", sim.exchange.price("AAPL") - 5))
            await sim.drop_connections()
            await ended.wait()
        clock.advance(300)
        await sim.execute(1, int(order.id), Decimal(10))  # filled: no longer an open order
        clock.advance(600)
        # The next one shakes hands with TWS (hearing it) and dies before taking stock.
        failed = line.make()
        await failed._session.open()
        await failed.disconnect()
        third, log = line.make(), UpdateLog()
        async with streaming(third, log):
            await third.open_orders()
    fills = [(u.order.client_order_id, u.fill.qty) for u in log.updates if u.fill]
    assert fills == [("gone-1", Decimal(10))]


async def test_a_gap_that_began_with_tws_losing_ib_begins_there_whatever_was_heard_after() -> None:
    async with on_a_wall_clock() as (sim, clock, line):
        first, ended = line.make(), Ended()
        async with streaming(first, UpdateLog(), ended):
            order = await first.submit(gtc_limit("lost-1", sim.exchange.price("AAPL") - 5))
            await sim.connectivity_lost()  # 1100: what happens at IB may not reach us
            await first.open_orders()
            clock.advance(120)
            sim.faults.silent = True
            await sim.execute(1, int(order.id), Decimal(10))  # never heard
            sim.faults.silent = False
            clock.advance(480)
            await first.open_orders()  # TWS still talks, IB still lost
            await sim.drop_connections()
            await ended.wait()
        second, log = line.make(), UpdateLog()
        async with streaming(second, log):
            await second.open_orders()
    fills = [(u.order.client_order_id, u.fill.qty) for u in log.updates if u.fill]
    assert fills == [("lost-1", Decimal(10))]


async def test_an_execution_older_than_the_filter_that_no_one_heard_is_found_in_the_days() -> None:
    async with on_a_wall_clock() as (sim, clock, line):
        first, log = line.make(), UpdateLog()
        ended = Ended()
        async with streaming(first, log, ended):
            order = await first.submit(gtc_limit("old-1", sim.exchange.price("AAPL") - 5))
            await sim.execute(1, int(order.id), Decimal(2))
            heard = await log.wait_for(lambda u: u.fill is not None)
            clock.advance(600)
            await first.open_orders()
            await sim.drop_connections()
            await ended.wait()
        # As if TWS had never pushed that execution, nor been asked for it since.
        assert heard.fill is not None
        line.ledger.heard.pop(heard.fill.fill_id)
        line.ledger.delivered.pop(heard.fill.fill_id)
        second, again = line.make(), UpdateLog()
        asked = requests_sent(second)
        async with streaming(second, again):
            await second.open_orders()
    # The order's status shows 2 filled, the executions since the gap none: the day's asked.
    filters = [r.filter.time for r in asked if isinstance(r, wire.ReqExecutions)]
    assert len(filters) == 2 and filters[0] and filters[1] == ""
    fills = [(u.fill.fill_id, u.fill.qty) for u in again.updates if u.fill]
    assert fills == [(heard.fill.fill_id, Decimal(2))]


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
