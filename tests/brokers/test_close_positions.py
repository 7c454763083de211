"""``ClosePosition`` and ``Flatten`` through the whole service, on every venue.

One service runs the paper broker and the Alpaca, OANDA and TWS simulators
side by side (real sockets, a real SQLite journal in a temporary state
directory). Each venue: open positions, close them, and check the venue is
flat, ``positions`` says so, and the closing orders are journaled orders.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.brokers.alpaca.harness import KEY, SECRET
from tests.brokers.alpaca.harness import running_sim as alpaca_sim
from tests.brokers.ib.harness import running_sim as ib_sim
from tests.brokers.oanda.harness import ACCOUNT, TOKEN
from tests.brokers.oanda.harness import running_sim as oanda_sim
from ult_actors.actors.commands import QueryPositions
from ult_actors.config import load_config
from ult_actors.errors import InvalidOrder, NotFound, RiskRejected, UltError
from ult_actors.messages import (
    TERMINAL_STATUSES,
    ClosePosition,
    Flatten,
    GetPositions,
    ListOrders,
    Order,
    OrderReply,
    OrderRequest,
    OrdersReply,
    PositionsReply,
    Request,
    SetKillSwitch,
    Submit,
)
from ult_actors.runtime.mailbox import call
from ult_actors.service import Service, build_service
from ult_actors.sim.ib import TwsSimulator

BOUND = 20  # seconds any one step may take


@dataclass(frozen=True)
class Venue:
    """What a venue trades in these tests: two symbols, a lot, and a price far below."""

    broker: str
    first: str
    second: str
    qty: Decimal
    far_below: Decimal


VENUES = {
    "paper": Venue("paper", "AAPL", "MSFT", Decimal(5), Decimal(50)),
    "alpaca": Venue("alpaca", "AAPL", "MSFT", Decimal(5), Decimal(50)),
    "oanda": Venue("oanda", "EUR_USD", "GBP_USD", Decimal(1000), Decimal("0.5")),
    "ib": Venue("ib", "AAPL", "MSFT", Decimal(5), Decimal(1)),
}


@pytest.fixture
async def sim() -> AsyncIterator[TwsSimulator]:
    """The TWS simulator the ib broker of ``every_venue`` trades on."""
    async with ib_sim() as server:
        yield server


@asynccontextmanager
async def every_venue(state_dir: Path, tws: TwsSimulator) -> AsyncIterator[Service]:
    """The service on paper + the Alpaca, OANDA and TWS simulators."""
    async with alpaca_sim() as (_alpaca, alpaca_port), oanda_sim() as oanda:
        assert tws.port is not None
        env = {
            "ULT_STATE_DIR": str(state_dir),
            "ALPACA_API_KEY": KEY,
            "ALPACA_API_SECRET": SECRET,
            "ALPACA_BASE_URL": f"http://127.0.0.1:{alpaca_port}",
            "ALPACA_STREAM_URL": f"ws://127.0.0.1:{alpaca_port}/stream",
            "OANDA_API_TOKEN": TOKEN,
            "OANDA_ACCOUNT_ID": ACCOUNT,
            "OANDA_BASE_URL": oanda.base_url,
            "OANDA_STREAM_URL": oanda.base_url,
            "IB_PORT": str(tws.port),
            "ORDER_RETRY_DELAY": "10",
        }
        cfg = load_config(None, env=env)
        svc = build_service(cfg, env=env, rng=random.Random(3))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(BOUND):
                await nursery.start(svc.run)
            yield svc
            nursery.cancel_scope.cancel()


async def ask(svc: Service, request: Request) -> object:
    with trio.fail_after(BOUND):
        return await svc.gateway.handle(request)


async def filled_buy(svc: Service, venue: Venue, symbol: str, coid: str) -> Order:
    order = OrderRequest(
        symbol=symbol, side="buy", qty=venue.qty, broker=venue.broker, client_order_id=coid
    )
    reply = await ask(svc, Submit(id=1, order=order, wait=True))
    assert isinstance(reply, OrderReply) and reply.order.status == "filled", reply
    return reply.order


async def resting_buy(svc: Service, venue: Venue, coid: str) -> Order:
    order = OrderRequest(
        symbol=venue.first,
        side="buy",
        qty=venue.qty,
        type="limit",
        limit_price=venue.far_below,
        time_in_force="gtc",
        broker=venue.broker,
        client_order_id=coid,
    )
    reply = await ask(svc, Submit(id=2, order=order))
    assert isinstance(reply, OrderReply) and reply.order.status == "accepted", reply
    return reply.order


async def held_at_venue(svc: Service, broker: str) -> dict[str, Decimal]:
    """The venue's own positions (asked live), by symbol."""
    with trio.fail_after(BOUND):
        positions = await call(svc.brokers[broker], QueryPositions(), timeout=BOUND)
    return {p.symbol: p.qty for p in positions if p.qty != 0}


async def settle(svc: Service, broker: str, symbols: set[str]) -> None:
    """Wait until the venue and ``positions`` hold none of ``symbols`` and no order is open."""
    with trio.fail_after(BOUND):
        while True:
            venue = await held_at_venue(svc, broker)
            shown = await ask(svc, GetPositions(id=3, broker=broker))
            assert isinstance(shown, PositionsReply)
            booked = {p.symbol for p in shown.positions if p.qty != 0}
            listed = await ask(svc, ListOrders(id=4, open_only=True, broker=broker))
            assert isinstance(listed, OrdersReply)
            if not (symbols & (set(venue) | booked)) and not listed.orders:
                return
            await trio.sleep(0.05)


async def journaled(svc: Service, broker: str) -> list[Order]:
    listed = await ask(svc, ListOrders(id=5, broker=broker))
    assert isinstance(listed, OrdersReply)
    return listed.orders


@pytest.mark.parametrize("broker", sorted(VENUES))
async def test_close_takes_one_position_flat_with_a_journaled_closing_order(
    broker: str, sim: TwsSimulator, tmp_path: Path
) -> None:
    venue = VENUES[broker]
    async with every_venue(tmp_path, sim) as svc:
        await filled_buy(svc, venue, venue.first, f"open-{broker}")
        with trio.fail_after(BOUND):
            while venue.first not in await held_at_venue(svc, broker):
                await trio.sleep(0.02)
        reply = await ask(svc, ClosePosition(id=7, symbol=venue.first))  # the one holder
        assert isinstance(reply, OrdersReply)
        (closing,) = reply.orders
        assert (closing.broker, closing.symbol, closing.side) == (broker, venue.first, "sell")
        assert closing.qty == venue.qty
        await settle(svc, broker, {venue.first})
        final = {o.client_order_id: o for o in await journaled(svc, broker)}
        assert final[closing.client_order_id].status == "filled"
        assert final[closing.client_order_id].filled_qty == venue.qty
        with pytest.raises(NotFound):
            await ask(svc, ClosePosition(id=8, symbol=venue.first, broker=broker))


@pytest.mark.parametrize("broker", sorted(VENUES))
async def test_flatten_cancels_open_orders_and_closes_every_position(
    broker: str, sim: TwsSimulator, tmp_path: Path
) -> None:
    venue = VENUES[broker]
    async with every_venue(tmp_path, sim) as svc:
        await filled_buy(svc, venue, venue.first, f"a-{broker}")
        await filled_buy(svc, venue, venue.second, f"b-{broker}")
        resting = await resting_buy(svc, venue, f"rest-{broker}")
        with trio.fail_after(BOUND):
            while len(await held_at_venue(svc, broker)) < 2:
                await trio.sleep(0.02)
        reply = await ask(svc, Flatten(id=9, broker=broker))
        assert isinstance(reply, OrdersReply)
        by_coid = {o.client_order_id: o for o in reply.orders}
        assert by_coid[resting.client_order_id].status in ("canceled", "pending_cancel")
        closing = [o for o in reply.orders if o.client_order_id != resting.client_order_id]
        assert sorted(o.symbol for o in closing) == sorted([venue.first, venue.second])
        assert all(o.side == "sell" and o.qty == venue.qty for o in closing)
        await settle(svc, broker, {venue.first, venue.second})
        final = {o.client_order_id: o for o in await journaled(svc, broker)}
        assert final[resting.client_order_id].status == "canceled"
        assert all(final[o.client_order_id].status == "filled" for o in closing)
        assert all(o.status in TERMINAL_STATUSES for o in final.values())


async def test_flatten_passes_the_kill_switch_but_new_orders_do_not(
    sim: TwsSimulator, tmp_path: Path
) -> None:
    venue = VENUES["paper"]
    async with every_venue(tmp_path, sim) as svc:
        await filled_buy(svc, venue, venue.first, "before-halt")
        await ask(svc, SetKillSwitch(id=10, on=True))
        with pytest.raises(RiskRejected):
            await filled_buy(svc, venue, venue.second, "after-halt")
        reply = await ask(svc, Flatten(id=11))  # every broker; only paper holds anything
        assert isinstance(reply, OrdersReply)
        assert [(o.broker, o.symbol, o.side) for o in reply.orders] == [
            ("paper", venue.first, "sell")
        ]
        await settle(svc, "paper", {venue.first})


async def test_close_without_broker_refuses_when_several_hold_the_symbol(
    sim: TwsSimulator, tmp_path: Path
) -> None:
    async with every_venue(tmp_path, sim) as svc:
        await filled_buy(svc, VENUES["paper"], "AAPL", "p-1")
        await filled_buy(svc, VENUES["ib"], "AAPL", "i-1")
        with trio.fail_after(BOUND):
            while "AAPL" not in await held_at_venue(svc, "ib"):
                await trio.sleep(0.02)
        with pytest.raises(InvalidOrder) as info:
            await ask(svc, ClosePosition(id=12, symbol="AAPL"))
        assert info.value.field == "broker" and "ib" in info.value.message
        assert "paper" in info.value.message
        with pytest.raises(UltError) as unknown:
            await ask(svc, ClosePosition(id=13, symbol="AAPL", broker="nope"))
        assert unknown.value.code == "not_found"
        with pytest.raises(InvalidOrder):
            await ask(svc, ClosePosition(id=14, symbol="not a symbol"))
