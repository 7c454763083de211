"""Issue 18 at OANDA: a silent stream is dropped in time, a missed fill is recovered once.

A fill the stream missed is delivered by the next stream before it reports started
(the connector has no ``resync`` of its own: see ``oanda.connector``).

Real loopback sockets to the simulator; where time matters it is trio's
MockClock with autojump, so the silence bound is exact virtual seconds.
"""

from __future__ import annotations

from decimal import Decimal

import trio
import trio.testing

from tests.brokers.oanda.harness import connected, running_sim, settings_for
from tests.brokers.oanda.test_stream import StreamRun
from ult_actors.brokers.oanda.connector import OandaConnector, TransactionCursor
from ult_actors.messages import OrderRequest
from ult_actors.sim.oanda.faults import Fault

#: A heartbeat interval long enough that no heartbeat arrives during a test.
NO_HEARTBEATS_S = 3600.0


def market(client_order_id: str, qty: int = 1000) -> OrderRequest:
    return OrderRequest(
        symbol="EUR_USD", side="buy", qty=Decimal(qty), client_order_id=client_order_id
    )


async def test_a_silent_stream_is_dropped_within_twice_stale_after_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stale_after_s = 15.0
    async with running_sim(heartbeat_s=5.0) as sim:
        connector = OandaConnector("oanda", settings_for(sim, stale_after_s=stale_after_s))
        await connector.connect()
        assert connector.last_message_at is None
        stream = StreamRun(connector)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(10):
                await nursery.start(stream.run)
            await trio.sleep(32)  # heartbeats at 5, 10, ... 30 s keep it alive
            assert stream.failure is None
            last = connector.last_message_at
            assert last is not None and trio.current_time() - last <= 5.0
            went_silent = trio.current_time()
            sim.arm(Fault(kind="silent"))  # open, but no transaction and no heartbeat
            with trio.fail_after(4 * stale_after_s):
                await stream.died.wait()
            detected_after = trio.current_time() - went_silent
        await connector.disconnect()
    assert stream.failure is not None and "silent for 15 s" in str(stream.failure)
    assert connector.last_message_at == last  # nothing came after the silence began
    print(f"silent OANDA stream detected after {detected_after:g} s (stale_after_s 15)")
    assert detected_after <= 2 * stale_after_s


async def test_a_fill_the_stream_never_sent_comes_once_before_the_next_stream_starts() -> None:
    cursor = TransactionCursor()  # shared by the incarnations of one connection
    async with running_sim(heartbeat_s=NO_HEARTBEATS_S) as sim:
        async with connected(sim, cursor=cursor) as (connector, log):
            sim.arm(Fault(kind="drop_events", events=["ORDER_FILL"]))
            order = await connector.submit(market("rs-missed"))
            await log.wait_for(lambda u: u.order.client_order_id == "rs-missed")
            assert sim.events_dropped == 1
            assert [u for u in log.updates if u.fill is not None] == []  # the stream never said
        async with connected(sim, cursor=cursor) as (_, second):
            missed = list(second.updates)  # started: what the last one missed is delivered
        async with connected(sim, cursor=cursor) as (_, third):
            again = list(third.updates)
        fill_txn = sim.book.transactions_since(order.id)[1]["transactions"][0]
    fills = [u.fill for u in missed if u.fill is not None]
    assert [(f.qty, f.side) for f in fills] == [(Decimal(1000), "buy")]
    assert fill_txn["type"] == "ORDER_FILL" and fills[0].fill_id == fill_txn["id"]
    assert missed[-1].order.status == "filled"
    assert again == []  # not again


async def test_a_heartbeat_ahead_of_the_stream_fills_the_gap_at_once_without_a_drop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_sim(heartbeat_s=5.0) as sim:
        connector = OandaConnector("oanda", settings_for(sim))
        await connector.connect()
        stream = StreamRun(connector)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(10):
                await nursery.start(stream.run)
            sim.arm(Fault(kind="drop_events", events=["ORDER_FILL"]))
            dropped_at = trio.current_time()
            await connector.submit(market("hb-gap"))
            # The next heartbeat names the dropped fill's id: it is fetched then and there.
            filled = await stream.log.wait_for(
                lambda u: u.order.client_order_id == "hb-gap" and u.fill is not None, timeout=10
            )
            assert trio.current_time() - dropped_at <= 5.0
            assert filled.order.status == "filled"
            assert stream.failure is None
            nursery.cancel_scope.cancel()
        await connector.disconnect()
    assert sim.events_dropped == 1
