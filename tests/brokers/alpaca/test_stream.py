"""The trade_updates stream: gaps filled by the reconnect sweep, repeats never doubled, auth fatal."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import trio

from tests.brokers.alpaca.harness import KEY, SECRET, connected, running_sim
from ult_actors.brokers.alpaca.ledger import Execution, FillLedger
from ult_actors.brokers.alpaca.stream import StreamTimeouts, open_trade_updates
from ult_actors.errors import AuthFailed
from ult_actors.messages import Order, OrderRequest
from ult_actors.secrets import Secret
from ult_actors.sim.alpaca.faults import Fault


def market(coid: str, qty: str) -> OrderRequest:
    return OrderRequest(symbol="AAPL", side="buy", qty=Decimal(qty), client_order_id=coid)


async def test_fills_made_while_the_stream_was_down_arrive_after_the_reconnect_sweep() -> None:
    # Fills are stepped by hand, so the gap is certain: one fill is seen live,
    # the rest happens while no stream is connected.
    async with running_sim(autofill=False) as (sim, port), connected(port) as (conn, log):
        order = await conn.submit(market("gap-1", "4"))
        sim.venue.execute(order.id, qty=Decimal(1))  # at 190.00
        await log.wait_for(lambda u: u.fill is not None and u.order.id == order.id)

        sim.cut_streams()
        sim.venue.set_price("AAPL", Decimal("200.00"))
        sim.venue.execute(order.id)  # the other 3 at 200.00: nobody is listening
        assert sim.listens == 1

        final = await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
        assert sim.listens == 2
        fills = [u.fill for u in log.for_client_id("gap-1") if u.fill is not None]
        assert [(f.qty, f.price) for f in fills] == [
            (Decimal(1), Decimal("190.00")),
            (Decimal(3), Decimal("200")),
        ]
        # Read back from Alpaca's FILL activities: the venue's own execution id.
        assert fills[1].fill_id == sim.venue.activities.entries[-1]["id"].partition("::")[2]
        assert final.order.filled_qty == 4
        assert final.order.avg_fill_price == Decimal("197.5")


async def test_an_order_placed_and_filled_during_the_outage_is_delivered_with_its_fills() -> None:
    async with running_sim() as (sim, port), connected(port) as (conn, log):
        sim.arm(Fault(kind="stream_refuse", count=1))
        sim.cut_streams()
        order = await conn.submit(market("during-outage", "2"))
        final = await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
        fills = [u.fill for u in log.for_client_id("during-outage") if u.fill is not None]
        assert sum(f.qty for f in fills) == final.order.filled_qty == 2


async def test_a_reconnect_with_nothing_new_delivers_no_fill_twice() -> None:
    async with running_sim() as (sim, port), connected(port) as (conn, log):
        first = await conn.submit(market("once-1", "2"))
        await log.wait_for(lambda u: u.order.id == first.id and u.order.status == "filled")
        before = [u.fill for u in log.updates if u.fill is not None]

        sim.cut_streams()
        await sim.wait_listening(2)
        # An update for a new order shows the sweep after the reconnect is over.
        second = await conn.submit(market("once-2", "1"))
        await log.wait_for(lambda u: u.order.id == second.id and u.order.status == "filled")
        again = [u.fill for u in log.updates if u.fill is not None and u.order.id == first.id]
        assert again == before


def order(filled: str, status: str = "partially_filled", avg: str | None = None) -> Order:
    return Order(
        id="o-1",
        client_order_id="c-1",
        broker="alpaca",
        symbol="AAPL",
        side="buy",
        qty=Decimal(10),
        type="market",
        time_in_force="day",
        status=status,  # type: ignore[arg-type]
        filled_qty=Decimal(filled),
        avg_fill_price=Decimal(avg) if avg else None,
        created_at=100,
    )


async def test_the_streams_new_repeating_the_submit_answer_is_not_delivered() -> None:
    async with running_sim(autofill=False) as (sim, port), connected(port) as (conn, log):
        # Hold the order's "new" until its REST answer is in (the stream can win that race).
        held: list[dict[str, object]] = []
        publish = sim.venue.publish
        sim.venue.publish = lambda m: held.append(m) if not held else publish(m)
        order = await conn.submit(market("no-repeat-1", "2"))
        assert order.status == "accepted"
        sim.venue.publish = publish
        publish(held[0])
        sim.venue.execute(order.id)
        await log.wait_for(lambda u: u.fill is not None)
        assert [u.order.status for u in log.for_client_id("no-repeat-1")] == ["filled"]


async def test_a_sweep_after_a_submit_brings_its_fills_not_the_state_its_answer_gave() -> None:
    ledger = FillLedger(watch_from_ns=time.time_ns())  # shared by one connection's incarnations
    async with running_sim(autofill=False) as (sim, port):
        async with connected(port, stream=False, ledger=ledger) as (conn, _):
            order = await conn.submit(market("sweep-1", "2"))
            sim.venue.execute(order.id)  # no stream listens
        async with connected(port, ledger=ledger) as (_, log):
            updates = list(log.updates)  # started: the sweep is delivered
    assert [(u.order.status, u.fill and u.fill.qty) for u in updates] == [("filled", Decimal(2))]


def test_ledger_delivers_each_execution_once_whatever_order_reports_arrive_in() -> None:
    ledger = FillLedger(watch_from_ns=0)
    changed, fills = ledger.settle(
        order("4", avg="10"), Execution("e1", Decimal(4), Decimal(10), 1)
    )
    assert changed and [(f.fill_id, f.qty) for f in fills] == [("e1", Decimal(4))]
    # The same execution again (a repeat, or the sweep after it): nothing new.
    assert ledger.settle(order("4", avg="10"), Execution("e1", Decimal(4), Decimal(10), 1)) == (
        False,
        [],
    )
    assert ledger.settle(order("4", avg="10"), None) == (False, [])
    # A later report that skipped an execution: the gap is made up, the reported one kept.
    changed, fills = ledger.settle(
        order("10", "filled", avg="11.2"), Execution("e3", Decimal(2), Decimal(13), 3)
    )
    # 10 @ 11.2 = 112 in all; 4 @ 10 were delivered, 2 @ 13 reported: 4 @ 11.5 are missing.
    assert [(f.qty, f.price) for f in fills] == [(4, Decimal("11.5")), (2, Decimal(13))]
    assert ":gap:" in fills[0].fill_id and fills[1].fill_id == "e3"


def test_ledger_takes_older_orders_fills_as_already_delivered() -> None:
    ledger = FillLedger(watch_from_ns=1_000)  # the order (created at 100) predates us
    changed, fills = ledger.settle(order("6", avg="10"), None)
    assert changed and fills == []
    _, fills = ledger.settle(order("10", "filled", avg="10"), None)
    assert [f.qty for f in fills] == [Decimal(4)]


async def test_wrong_stream_credentials_are_auth_failed_and_not_retried() -> None:
    async with running_sim() as (sim, port):
        with trio.fail_after(10), pytest.raises(AuthFailed) as err:
            async with open_trade_updates(
                f"ws://127.0.0.1:{port}/stream",
                Secret(KEY),
                Secret("wrong-" + SECRET),
                broker="alpaca",
                timeouts=StreamTimeouts(),
            ):
                pass  # pragma: no cover - never reached
        assert SECRET not in str(err.value)
        assert sim.listens == 0


async def test_the_sweep_leaves_orders_from_before_the_connection_to_reconciliation() -> None:
    async with running_sim(autofill=False) as (sim, port):
        # Another tool's open order, placed before the gateway connected.
        older = sim.venue.submit(
            {"symbol": "MSFT", "qty": "1", "side": "buy", "type": "market",
             "time_in_force": "day", "client_order_id": "elsewhere-1"}
        )  # fmt: skip
        async with connected(port) as (conn, log):
            sim.cut_streams()  # its fill happens while the stream is down
            sim.venue.execute(older.id)
            ours = await conn.submit(market("ours-1", "1"))
            sim.venue.execute(ours.id)
            await log.wait_for(lambda u: u.order.id == ours.id and u.order.status == "filled")
            assert sim.listens == 2
            assert log.for_client_id("elsewhere-1") == []


async def test_expired_and_rejected_orders_arrive_final_from_the_stream() -> None:
    def resting(coid: str, tif: str) -> OrderRequest:
        return OrderRequest(
            symbol="AAPL",
            side="buy",
            qty=Decimal(1),
            type="limit",
            limit_price=Decimal("150.00"),
            time_in_force=tif,  # type: ignore[arg-type]
            client_order_id=coid,
        )

    async with running_sim() as (sim, port), connected(port) as (conn, log):
        day = await conn.submit(resting("day-1", "day"))
        gtc = await conn.submit(resting("gtc-1", "gtc"))
        doomed = await conn.submit(resting("doomed-1", "gtc"))
        sim.venue.reject(doomed.id)
        assert sim.venue.close_day() == [day.id]
        expired = await log.wait_for(lambda u: u.order.id == day.id and u.order.status == "expired")
        rejected = await log.wait_for(
            lambda u: u.order.id == doomed.id and u.order.status == "rejected"
        )
        assert expired.order.filled_qty == 0 and rejected.order.reject_reason
        assert {o.id for o in await conn.open_orders()} == {gtc.id}
        assert not (await conn.market_clock()).is_open
