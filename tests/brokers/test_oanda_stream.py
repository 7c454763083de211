"""The transaction stream: heartbeats keep it alive, silence kills it, a restart misses nothing.

Time is trio's MockClock with autojump, so heartbeat intervals and timeouts
are exact virtual seconds, not races against a loaded machine.
"""

from __future__ import annotations

from decimal import Decimal

import trio
import trio.testing

from tests.brokers.contract import UpdateLog
from tests.brokers.test_oanda_harness import connected, running_sim, settings_for
from ult_actors.brokers.oanda import OandaConnector, TransactionCursor
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import OrderRequest
from ult_actors.sim.oanda_faults import Fault


class StreamRun:
    """A connector's stream in a task, its updates logged and its death recorded."""

    def __init__(self, connector: OandaConnector) -> None:
        self.connector = connector
        self.log = UpdateLog()
        self.failure: BrokerUnavailable | None = None
        self.died = trio.Event()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.connector.stream_updates(self.log.sink, task_status=task_status)
        except BrokerUnavailable as exc:
            self.failure = exc
            self.died.set()


async def test_heartbeats_keep_the_stream_alive_and_their_loss_kills_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_sim(heartbeat_s=5.0) as sim:
        connector = OandaConnector("oanda", settings_for(sim, heartbeat_timeout_s=10.0))
        await connector.connect()
        stream = StreamRun(connector)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(10):
                await nursery.start(stream.run)
            await trio.sleep(60)  # twelve heartbeats, each within the 10 s timeout
            assert stream.failure is None
            switched = trio.current_time()
            sim.arm(Fault(kind="heartbeat_stop"))
            with trio.fail_after(30):
                await stream.died.wait()
            silent_for = trio.current_time() - switched
        await connector.disconnect()
        assert "no heartbeat" in str(stream.failure)
        # The last heartbeat came at most 5 s before the switch; 10 s after it the stream is dead.
        assert 5 <= silent_for <= 10


async def test_a_dropped_stream_connection_raises(autojump_clock: trio.testing.MockClock) -> None:
    async with running_sim() as sim:
        connector = OandaConnector("oanda", settings_for(sim))
        await connector.connect()
        stream = StreamRun(connector)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(10):
                await nursery.start(stream.run)
            assert sim.cut_streams() == 1
            with trio.fail_after(10):
                await stream.died.wait()
        await connector.disconnect()
        assert isinstance(stream.failure, BrokerUnavailable)


async def test_a_restarted_stream_fetches_what_happened_while_it_was_dead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cursor = TransactionCursor()
    async with running_sim(heartbeat_s=5.0) as sim:
        settings = settings_for(sim, heartbeat_timeout_s=10.0)
        first = OandaConnector("oanda", settings, cursor=cursor)
        await first.connect()
        old = StreamRun(first)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(10):
                await nursery.start(old.run)
            resting = await first.submit(
                OrderRequest(
                    symbol="EUR_USD",
                    side="buy",
                    qty=Decimal(1000),
                    type="limit",
                    limit_price=Decimal("0.9"),
                    time_in_force="gtc",
                    client_order_id="gap-rest",
                )
            )
            await old.log.wait_for(lambda u: u.order.client_order_id == "gap-rest")
            # The connection stays open but nothing more arrives on it.
            sim.arm(Fault(kind="stream_mute"))
            await first.submit(
                OrderRequest(
                    symbol="EUR_USD", side="sell", qty=Decimal(2000), client_order_id="gap-fill"
                )
            )
            await first.cancel(resting.id)
            with trio.fail_after(30):
                await old.died.wait()
        await first.disconnect()
        assert not old.log.for_client_id("gap-fill")  # the dead stream never said

        async with connected(sim, cursor=cursor, heartbeat_timeout_s=10.0) as (_, log):
            # Backfilled before the stream reported itself live: no waiting needed.
            fills = [u.fill for u in log.for_client_id("gap-fill") if u.fill is not None]
            assert [f.qty for f in fills] == [Decimal(2000)]
            assert fills[0].side == "sell"
            assert log.for_client_id("gap-fill")[-1].order.status == "filled"
            assert log.for_client_id("gap-rest")[-1].order.status == "canceled"
            assert cursor.last_id == int(sim.book.last_id)
            # Each transaction was delivered once across both incarnations.
            replayed = [u for u in log.updates if u.order.client_order_id == "gap-rest"]
            assert [u.order.status for u in replayed] == ["canceled"]
