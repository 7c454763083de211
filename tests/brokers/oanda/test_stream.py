"""The transaction stream: heartbeats keep it alive, silence kills it, a restart misses nothing.

Time is trio's MockClock with autojump, so heartbeat intervals and timeouts
are exact virtual seconds, not races against a loaded machine. The delivery
rules (``TransactionFeed``) are also tested alone, without HTTP.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import structlog
import trio
import trio.testing

from tests.brokers.contract import UpdateLog
from tests.brokers.oanda.harness import connected, running_sim, settings_for
from ult_actors.brokers.oanda.connector import OandaConnector, TransactionCursor
from ult_actors.brokers.oanda.stream import TransactionFeed
from ult_actors.brokers.oanda.wire import TransactionsReply, WireTransaction
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import OrderRequest
from ult_actors.sim.oanda.faults import Fault


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
        connector = OandaConnector("oanda", settings_for(sim, stale_after_s=10.0))
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
        settings = settings_for(sim, stale_after_s=10.0)
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

        async with connected(sim, cursor=cursor, stale_after_s=10.0) as (_, log):
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


# -- the delivery rules on their own, without HTTP ---------------------------------


class Account:
    """Transactions 1..n as v20 would page them out of ``sinceid``."""

    def __init__(self, newest: int, page: int = 3) -> None:
        self.newest = newest
        self.page = page
        self.fetches: list[int] = []

    async def fetch_since(self, since: int) -> TransactionsReply:
        self.fetches.append(since)
        ids = range(since + 1, min(self.newest, since + self.page) + 1)
        return TransactionsReply(
            transactions=[WireTransaction(type="ORDER_FILL", id=str(i)) for i in ids],
            lastTransactionID=str(self.newest),
        )


def feed_for(account: Account, cursor: TransactionCursor) -> TransactionFeed:
    return TransactionFeed(
        cursor, account.fetch_since, broker="oanda", stale_after_s=10, log=structlog.get_logger()
    )


class Delivered(list[int]):
    """The ids delivered, in order."""

    async def __call__(self, txn: WireTransaction) -> None:
        self.append(int(txn.id or 0))


def tx(txn_id: int) -> str:
    return f'{{"type": "ORDER_FILL", "id": "{txn_id}"}}'


async def test_each_transaction_is_delivered_once_in_order_whatever_the_stream_does() -> None:
    account = Account(newest=7, page=3)
    cursor = TransactionCursor(2)
    feed, delivered = feed_for(account, cursor), Delivered()
    assert await feed.backfill(delivered) == 5  # 3..7, over two pages
    assert account.fetches == [2, 5]
    await feed.on_line(tx(6), delivered)  # already fetched: skipped
    account.newest = 9
    await feed.on_line(tx(9), delivered)  # 8 missing on the stream: fetched, 9 with it
    await feed.on_line(tx(8), delivered)  # late duplicate
    account.newest = 11
    beat = '{"type": "HEARTBEAT", "lastTransactionID": "11"}'
    await feed.on_line(beat, delivered)  # ahead: fetch
    await feed.on_line(beat, delivered)  # level: nothing
    await feed.on_line(tx(12), delivered)
    assert delivered == list(range(3, 13))
    assert cursor.last_id == 12


async def test_a_garbled_line_is_a_dead_stream() -> None:
    feed = feed_for(Account(newest=1), TransactionCursor(1))
    with pytest.raises(BrokerUnavailable, match="not a transaction"):
        await feed.on_line("{half a line", Delivered())


async def test_a_failed_delivery_leaves_the_cursor_before_it() -> None:
    account = Account(newest=3)
    cursor = TransactionCursor(1)

    async def deliver(txn: WireTransaction) -> None:
        if txn.id == "3":
            raise BrokerUnavailable("journal went away")

    with pytest.raises(BrokerUnavailable):
        await feed_for(account, cursor).backfill(deliver)
    assert cursor.last_id == 2  # 3 will be fetched again by the next incarnation
