"""Each simulator fault switch, and the error or recovery the connector promises for it."""

from __future__ import annotations

import socket
from decimal import Decimal

import pytest
import trio

from tests.brokers.alpaca.harness import (
    clock_standing_in_this_minute,
    connected,
    running_sim,
    settings_for,
)
from ult_actors.brokers.alpaca.connector import AlpacaConnector
from ult_actors.errors import (
    AlreadyFinal,
    BrokerUnavailable,
    DuplicateOrder,
    InsufficientFunds,
    InvalidOrder,
    NotFound,
    RateLimited,
)
from ult_actors.messages import OrderRequest
from ult_actors.sim.alpaca.faults import Fault


def market(coid: str, qty: str = "2", side: str = "buy", symbol: str = "AAPL") -> OrderRequest:
    return OrderRequest(
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        qty=Decimal(qty),
        client_order_id=coid,
    )


async def test_dropped_connection_is_broker_unavailable_and_nothing_was_applied() -> None:
    async with running_sim() as (sim, port), connected(port, stream=False) as (conn, _):
        sim.arm(Fault(kind="drop", method="POST", path="/v2/orders"))
        with trio.fail_after(10), pytest.raises(BrokerUnavailable) as err:
            await conn.submit(market("drop-1"))
        assert "look it up by client order id" in err.value.message
        assert sim.faults.fired == {"drop": 1}
        assert sim.venue.stats.orders_created == 0
        with pytest.raises(NotFound):
            await conn.get_order_by_client_id("drop-1")
        # The fault is used up: the retry goes through, once.
        order = await conn.submit(market("drop-1"))
        assert order.client_order_id == "drop-1"
        assert sim.venue.stats.orders_created == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_json_or_html_is_broker_unavailable(status: int) -> None:
    async with running_sim() as (sim, port), connected(port, stream=False) as (conn, _):
        sim.arm(Fault(kind="status", status=status, path="/v2/account"))
        with trio.fail_after(10), pytest.raises(BrokerUnavailable, match=f"HTTP {status}"):
            await conn.account()
        assert (await conn.account()).cash > 0  # transient: the next call works


async def test_429_reports_retry_after_from_the_reset_header_and_backs_off() -> None:
    # A window that resets later than the connector will wait: it fails fast,
    # without spending a request, until the reset.
    async with (
        running_sim() as (sim, port),
        connected(port, stream=False, rate_limit_max_wait_s=0.5) as (conn, _),
    ):
        sim.arm(Fault(kind="rate_limit", retry_after_s=30, path="/v2/positions"))
        with trio.fail_after(10), pytest.raises(RateLimited) as err:
            await conn.positions()
        assert err.value.retry_after is not None and 29 <= err.value.retry_after <= 31
        seen = sim.requests
        with pytest.raises(RateLimited) as again:
            await conn.account()
        assert again.value.retry_after is not None and again.value.retry_after > 28
        assert sim.requests == seen  # held back locally: Alpaca was not asked


async def test_429_with_retry_after_waits_out_a_short_window_then_succeeds() -> None:
    async with (
        running_sim() as (sim, port),
        connected(port, stream=False, rate_limit_max_wait_s=2.0) as (conn, _),
    ):
        sim.arm(
            Fault(kind="rate_limit", retry_after_s=0.3, retry_after_header=True, path="/v2/clock")
        )
        with trio.fail_after(10), pytest.raises(RateLimited) as err:
            await conn.market_clock()
        assert err.value.retry_after == 0.3
        start = trio.current_time()
        with trio.fail_after(10):
            clock = await conn.market_clock()
        assert clock.is_open
        assert trio.current_time() - start >= 0.25  # waited for the window, then asked


async def test_the_simulators_own_rate_limit_headers_close_the_gate_before_a_429() -> None:
    # The venue's clock stands still, and the connector reads the same one: the
    # simulator's window is a calendar minute, and a test running across a minute's end
    # would find its budget renewed (at the venue) or its reset passed (at the connector).
    # It stands a second into a minute: the reset the connector hears is then ~59 s away in
    # its own (trio) time too, not a few ms that pass before the third request goes.
    now_ns = clock_standing_in_this_minute(1)
    async with (
        running_sim(rate_limit_per_minute=3, now_ns=now_ns) as (sim, port),
        connected(port, stream=False, now_ns=now_ns) as (conn, _),
    ):
        await conn.account()  # connect used the first request
        await conn.account()  # the third: X-RateLimit-Remaining is now 0
        with trio.fail_after(10), pytest.raises(RateLimited) as err:
            await conn.account()
        assert err.value.retry_after is not None and 0 <= err.value.retry_after <= 60
        assert sim.requests == 3


async def test_slow_reply_times_out_as_broker_unavailable() -> None:
    async with (
        running_sim() as (sim, port),
        connected(port, stream=False, read_timeout_s=0.3) as (conn, _),
    ):
        sim.arm(Fault(kind="slow", delay_s=5, path="/v2/account"))
        with trio.fail_after(3), pytest.raises(BrokerUnavailable, match="timed out"):
            await conn.account()
        with trio.fail_after(3):
            assert (await conn.account()).equity > 0


async def test_lost_reply_to_a_submit_is_found_by_client_order_id_never_sent_twice() -> None:
    async with running_sim() as (sim, port), connected(port, stream=False) as (conn, _):
        sim.arm(Fault(kind="lose_reply", method="POST", path="/v2/orders"))
        with trio.fail_after(10), pytest.raises(BrokerUnavailable):
            await conn.submit(market("lost-1"))
        # The order was applied: the lookup finds it, and a resend is refused as a duplicate.
        found = await conn.get_order_by_client_id("lost-1")
        assert found.client_order_id == "lost-1"
        with pytest.raises(DuplicateOrder):
            await conn.submit(market("lost-1"))
        assert sim.venue.stats.orders_created == 1


async def test_broker_refusals_map_to_named_errors() -> None:
    async with running_sim() as (sim, port), connected(port, stream=False) as (conn, _):
        with pytest.raises(InsufficientFunds, match="buying power"):
            await conn.submit(market("big-1", qty="100000"))
        with pytest.raises(InsufficientFunds, match="qty available"):
            await conn.submit(market("short-1", side="sell"))
        with pytest.raises(InvalidOrder) as err:
            await conn.submit(
                OrderRequest(
                    symbol="AAPL",
                    side="buy",
                    qty=Decimal(1),
                    type="limit",
                    limit_price=Decimal("150.001"),
                    client_order_id="subpenny-1",
                )
            )
        assert "sub-penny" in err.value.message
        with pytest.raises(NotFound):
            await conn.get_order("00000000-0000-4000-8000-000000000000")
        with pytest.raises(NotFound):
            await conn.cancel("00000000-0000-4000-8000-000000000000")
        assert sim.venue.stats.orders_created == 0


async def test_canceling_a_filled_order_is_already_final_naming_the_state() -> None:
    async with running_sim() as (_sim, port), connected(port) as (conn, log):
        order = await conn.submit(market("fill-then-cancel"))
        await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
        with trio.fail_after(10), pytest.raises(AlreadyFinal, match="is already filled"):
            await conn.cancel(order.id)  # Alpaca's 422: not cancelable


async def test_stream_drop_mid_fills_loses_no_fill() -> None:
    async with running_sim() as (sim, port), connected(port) as (conn, log):
        # Cut the stream right after the "new" event: both fills happen around the reconnect.
        sim.arm(Fault(kind="stream_drop", after_events=1))
        order = await conn.submit(market("drop-stream-1", qty="4"))
        filled = await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
        assert filled.order.filled_qty == 4
        await sim.wait_listening(2)
        fills = [u.fill for u in log.for_client_id("drop-stream-1") if u.fill is not None]
        assert sum(f.qty for f in fills) == 4
        assert len({f.fill_id for f in fills}) == len(fills)
        assert sim.faults.fired["stream_drop"] == 1


async def test_refused_stream_reconnects_are_retried_until_one_succeeds() -> None:
    async with running_sim() as (sim, port), connected(port) as (conn, log):
        sim.arm(Fault(kind="stream_refuse", count=2))
        sim.cut_streams()
        await sim.wait_listening(2)
        assert sim.faults.fired["stream_refuse"] == 2
        order = await conn.submit(market("after-refusals"))
        await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")


async def test_a_stream_that_stays_down_ends_the_task_for_the_supervisor() -> None:
    async with running_sim() as (sim, port):
        with pytest.RaisesGroup(BrokerUnavailable):
            async with connected(port, stream_max_reconnects=2) as (_conn, _):
                sim.arm(Fault(kind="stream_refuse", count=10))
                sim.cut_streams()
                with trio.fail_after(10):
                    await trio.sleep_forever()
        # Lost once, then refused twice: the third failure in a row ends the task.
        assert sim.faults.fired["stream_refuse"] == 2


async def test_a_silent_half_open_stream_is_found_by_ping_and_replaced() -> None:
    async with (
        running_sim() as (sim, port),
        connected(port, stream_ping_interval_s=0.1, stale_after_s=0.3) as (conn, log),
    ):
        sim.arm(Fault(kind="stream_mute"))
        await sim.wait_listening(2)
        order = await conn.submit(market("after-mute"))
        await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
        assert sim.faults.fired == {"stream_mute": 1}


async def test_a_flapping_stream_counts_as_failing_in_a_row() -> None:
    # Every session is cut as soon as it has listened and swept: it never gets
    # stable, so the failures add up and the task ends for the supervisor.
    async with running_sim() as (sim, port):
        with pytest.RaisesGroup(BrokerUnavailable):
            async with connected(port, stream_max_reconnects=3) as (_conn, _):
                for listens in range(1, 5):
                    await sim.wait_listening(listens)
                    sim.cut_streams()
                with trio.fail_after(10):
                    await trio.sleep_forever()
        assert sim.listens == 4


async def test_nothing_listening_is_broker_unavailable_not_auth_failed() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = AlpacaConnector("alpaca", settings_for(port))
    with trio.fail_after(10), pytest.raises(BrokerUnavailable, match="network error"):
        await connector.connect()
    await connector.disconnect()
