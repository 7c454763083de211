"""Connector calls outside the contract battery: market clock, cancel all, paged order lists."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
import trio

from tests.brokers.alpaca.harness import connected, running_sim
from ult_actors.brokers.alpaca import connector as alpaca
from ult_actors.messages import OrderRequest


def resting(coid: str) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL",
        side="buy",
        qty=Decimal(1),
        type="limit",
        limit_price=Decimal("150.00"),
        time_in_force="gtc",
        client_order_id=coid,
    )


async def test_market_clock_says_closed_and_orders_wait_for_the_open() -> None:
    async with running_sim(market_open=False) as (sim, port), connected(port) as (conn, log):
        clock = await conn.market_clock()
        assert clock.is_open is False and clock.next_open > clock.timestamp
        order = await conn.submit(
            OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="queued-1")
        )
        assert order.status == "accepted"
        sim.venue.set_market_open(True)
        await log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
        assert (await conn.market_clock()).is_open


async def test_cancel_all_cancels_every_open_order() -> None:
    async with running_sim() as (_sim, port), connected(port) as (conn, log):
        ids = {(await conn.submit(resting(f"all-{n}"))).id for n in range(3)}
        with trio.fail_after(10):
            results = await conn.cancel_all()
        assert results == dict.fromkeys(ids, 200)
        for order_id in ids:
            await log.wait_for(
                lambda u, i=order_id: u.order.id == i and u.order.status == "canceled"
            )
        assert await conn.open_orders() == []


async def test_open_orders_follows_pages_to_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alpaca, "_PAGE", 2)
    ticks = itertools.count(1_700_000_000_000_000_000, 1_000_000)  # 1 ms apart, no ties
    async with (
        running_sim(now_ns=lambda: next(ticks)) as (_sim, port),
        connected(port, stream=False) as (conn, _),
    ):
        placed = [(await conn.submit(resting(f"page-{n}"))).id for n in range(5)]
        assert [o.id for o in await conn.open_orders()] == placed
