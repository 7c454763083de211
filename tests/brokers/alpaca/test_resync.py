"""Issue 18 at Alpaca: a silent stream is found, and what any gap hid is recovered exactly once."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest
import trio

from tests.brokers.alpaca.harness import (
    KEY,
    SECRET,
    clock_standing_in_this_minute,
    connected,
    running_sim,
    settings_for,
)
from tests.brokers.alpaca.test_faults import market
from ult_actors.brokers.alpaca.connector import AlpacaConnector
from ult_actors.brokers.alpaca.ledger import FillLedger
from ult_actors.errors import RateLimited
from ult_actors.messages import OrderUpdate
from ult_actors.sim.alpaca.faults import Fault
from ult_actors.sim.alpaca.server import AlpacaSim

STALE_AFTER_S = 1.0


def execution_ids(sim: AlpacaSim) -> list[str]:
    """The venue's execution ids, in execution order (from its FILL activities)."""
    return [entry["id"].partition("::")[2] for entry in sim.venue.activities.entries]


async def test_a_silent_stream_is_found_within_twice_stale_after_and_its_fill_arrives_once() -> (
    None
):
    async with (
        running_sim(autofill=False) as (sim, port),
        connected(port, stale_after_s=STALE_AFTER_S, stream_ping_interval_s=0.2) as (conn, log),
    ):
        order = await conn.submit(market("silent-1", "2"))
        silent_since = trio.current_time()
        sim.arm(Fault(kind="silent"))
        sim.venue.execute(order.id)  # filled while the stream says nothing
        await sim.wait_listening(2, timeout=10 * STALE_AFTER_S)
        found_after = trio.current_time() - silent_since
        print(f"silent trade_updates found and replaced after {found_after:.3f} s"
              f" (stale_after_s={STALE_AFTER_S:g})")  # fmt: skip
        # Quiet lines are pinged, so a silence is found by its missing pong, not sooner.
        assert STALE_AFTER_S / 2 <= found_after < 2 * STALE_AFTER_S

        filled = await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
        fills = [u.fill for u in log.for_client_id("silent-1") if u.fill is not None]
        assert [(f.qty, f.fill_id) for f in fills] == [(Decimal(2), execution_ids(sim)[0])]
        assert filled.order.filled_qty == 2
        assert conn.last_message_at is not None and conn.last_message_at > silent_since


async def test_the_next_stream_delivers_fills_the_last_never_delivered_once_in_order() -> None:
    ledger = FillLedger(watch_from_ns=time.time_ns())  # shared by one connection's incarnations
    async with running_sim(autofill=False) as (sim, port):
        async with connected(port, ledger=ledger) as (conn, log):
            first = await conn.submit(market("gap-a", "4"))
            second = await conn.submit(market("gap-b", "1"))
            sim.venue.execute(first.id, qty=Decimal(1))  # delivered by the stream
            await log.wait_for(lambda u: u.fill is not None)

            sim.arm(Fault(kind="drop_events", count=2, events=["fill", "partial_fill"]))
            sim.venue.set_price("AAPL", Decimal("195.00"))
            sim.venue.execute(second.id)  # dropped
            sim.venue.execute(first.id)  # dropped: the other 3
            assert sim.events_dropped == 2
            streamed = [u.fill for u in log.updates if u.fill is not None]
        async with connected(port, ledger=ledger) as (_, after):
            missed = list(after.updates)  # started: what the last one missed is delivered
        async with connected(port, ledger=ledger) as (_, later):
            again = list(later.updates)
    fills = [u.fill for u in missed if u.fill is not None]
    executions = execution_ids(sim)
    assert [(f.client_order_id, f.qty, f.price, f.fill_id) for f in fills] == [
        ("gap-b", Decimal(1), Decimal("195.00"), executions[1]),
        ("gap-a", Decimal(3), Decimal("195.00"), executions[2]),
    ]
    final = {u.order.client_order_id: u.order for u in missed}
    assert final["gap-a"].status == "filled" and final["gap-a"].filled_qty == 4
    assert final["gap-a"].avg_fill_price == Decimal("193.75")
    assert final["gap-b"].status == "filled"
    assert again == []  # nothing new: nothing again
    assert [f.fill_id for f in streamed] == [executions[0]]


async def crash_on_fills(update: OrderUpdate) -> None:
    """A broker actor that crashes applying any fill (before its books have it)."""
    if update.fill is not None:
        raise RuntimeError("injected: broker actor crashed applying a fill")


async def test_a_fill_whose_delivery_crashed_is_delivered_once_by_a_later_incarnation() -> None:
    ledger = FillLedger(watch_from_ns=time.time_ns())  # shared by one connection's incarnations
    async with running_sim(autofill=False) as (sim, port):

        def incarnation() -> AlpacaConnector:
            return AlpacaConnector("alpaca", settings_for(port), ledger=ledger)

        first = incarnation()
        await first.connect()
        with (
            trio.fail_after(10),
            pytest.RaisesGroup(
                pytest.RaisesExc(RuntimeError, match="injected"), flatten_subgroups=True
            ),
        ):
            async with trio.open_nursery() as nursery:
                await nursery.start(first.stream_updates, crash_on_fills)
                order = await first.submit(market("crash-1", "2"))
                sim.venue.execute(order.id)  # the stream's fill: its delivery crashes
        await first.disconnect()
        second = incarnation()
        await second.connect()
        with trio.fail_after(10), pytest.raises(RuntimeError, match="injected"):
            await second.stream_updates(crash_on_fills)  # so does the catch-up's
        await second.disconnect()
        async with connected(port, ledger=ledger) as (_, log):
            delivered = list(log.updates)  # started: what no incarnation delivered is
        async with connected(port, ledger=ledger) as (_, later):
            again = list(later.updates)
    fills = [u.fill for u in delivered if u.fill is not None]
    assert [(f.fill_id, f.qty) for f in fills] == [(execution_ids(sim)[0], Decimal(2))]
    assert delivered[-1].order.status == "filled"
    assert again == []


async def test_a_later_update_revealing_a_dropped_fill_brings_it_back_with_its_id() -> None:
    async with running_sim(autofill=False) as (sim, port), connected(port) as (conn, log):
        order = await conn.submit(market("gap-live", "4"))
        sim.arm(Fault(kind="drop_events", events=["partial_fill"]))
        sim.venue.execute(order.id, qty=Decimal(1))  # dropped
        sim.venue.set_price("AAPL", Decimal("200.00"))
        sim.venue.execute(order.id)  # streamed: filled 4, one fill of 3 -- so 1 went missing
        await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
        fills = [u.fill for u in log.for_client_id("gap-live") if u.fill is not None]
        assert [(f.qty, f.price, f.fill_id) for f in fills] == [
            (Decimal(1), Decimal("190.00"), execution_ids(sim)[0]),
            (Decimal(3), Decimal("200.00"), execution_ids(sim)[1]),
        ]
        assert sim.listens == 1  # recovered on the live stream, no reconnect


async def test_a_reconnect_after_the_stream_delivered_everything_delivers_nothing() -> None:
    ledger = FillLedger(watch_from_ns=time.time_ns())
    async with running_sim() as (sim, port):
        async with connected(port, ledger=ledger) as (conn, log):
            order = await conn.submit(market("all-seen", "4"))
            await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
            assert len(sim.venue.activities.entries) == 2
        async with connected(port, ledger=ledger) as (_, after):
            assert after.updates == []


async def test_the_simulators_429_reaches_the_caller_as_rate_limited_with_its_reset() -> None:
    now_ns = clock_standing_in_this_minute(30)  # the venue's minute does not end mid-test
    async with (
        running_sim(now_ns=now_ns) as (sim, port),
        connected(port, stream=False, now_ns=now_ns, rate_limit_max_wait_s=0) as (conn, _),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
            trust_env=False,
        ) as other,
    ):
        sim.set_rate_limit(1)
        assert (await other.get("/v2/clock")).status_code == 200  # another client used it up
        with trio.fail_after(10), pytest.raises(RateLimited) as err:
            await conn.account()
        assert sim.faults.fired == {}  # Alpaca's own limit, not a fault
        assert err.value.retry_after == 30  # the rest of the venue's minute
