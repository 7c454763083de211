"""Replace and bracket / oco / oto orders at the Alpaca simulator, driven by alpaca-py.

Each test does what a user of the real venue does with Alpaca's own SDK
and checks what that user would see: the orders (read back through the
SDK's models) and the trade updates (parsed with the SDK's ``TradeUpdate``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar

import pytest
import trio
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, TimeInForce
from alpaca.trading.models import Order, TradeUpdate
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)

from tests.brokers.alpaca.harness import KEY, SECRET, running_sim
from ult_actors.sim.alpaca.server import AlpacaSim

T = TypeVar("T")
WAIT_S = 10.0


class Updates:
    """Every trade update the simulator publishes, parsed as alpaca-py parses them."""

    def __init__(self, sim: AlpacaSim) -> None:
        self.seen: list[TradeUpdate] = []
        self._changed = trio.Event()
        forward = sim.venue.publish

        def publish(message: dict[str, Any]) -> None:
            self.seen.append(TradeUpdate(**message["data"]))
            forward(message)
            self._changed.set()
            self._changed = trio.Event()

        sim.venue.publish = publish

    def of(self, order: Order) -> list[str]:
        """The events of one order, in order."""
        return [u.event for u in self.seen if u.order.id == order.id]

    async def wait(self, event: str, order: Order) -> TradeUpdate:
        """The first ``event`` of ``order``, waiting for it if need be."""
        with trio.fail_after(WAIT_S):
            while True:
                for update in self.seen:
                    if update.event == event and update.order.id == order.id:
                        return update
                await self._changed.wait()


class Sdk:
    """alpaca-py's ``TradingClient`` on the simulator; each call runs in a worker thread."""

    def __init__(self, port: int) -> None:
        self.client = TradingClient(
            KEY, SECRET, paper=True, url_override=f"http://127.0.0.1:{port}"
        )

    async def __call__(self, call: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(call, *args)

    async def order(self, order: Order) -> Order:
        """The order as it is now, legs nested."""
        fresh = await self(self.client.get_order_by_id, order.id, GetOrderByIdRequest(nested=True))
        assert isinstance(fresh, Order)
        return fresh

    async def place(self, request: Any) -> Order:
        placed = await self(self.client.submit_order, request)
        assert isinstance(placed, Order)
        return placed

    async def replace(self, order: Order, **changes: Any) -> Order:
        new = await self(self.client.replace_order_by_id, order.id, ReplaceOrderRequest(**changes))
        assert isinstance(new, Order)
        return new


@asynccontextmanager
async def sdk_on_sim(**options: Any) -> AsyncIterator[tuple[AlpacaSim, Sdk, Updates]]:
    async with running_sim(**options) as (sim, port):
        yield sim, Sdk(port), Updates(sim)


def resting_buy(qty: int = 2, limit: float = 150.0) -> LimitOrderRequest:
    """A buy limit under AAPL's 190.00: it rests."""
    return LimitOrderRequest(
        symbol="AAPL", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=limit
    )


async def test_a_replace_answers_with_a_new_order_and_links_the_two() -> None:
    async with sdk_on_sim() as (_sim, sdk, updates):
        old = await sdk.place(resting_buy())
        new = await sdk.replace(old, qty=3, limit_price=155.5)
        assert new.id != old.id and new.replaces == old.id
        assert new.status == OrderStatus.ACCEPTED
        replaced = await updates.wait("replaced", old)
        assert replaced.order.replaced_by == new.id
        await updates.wait("new", new)

        assert updates.of(old) == ["new", "pending_replace", "replaced"]
        old_now, new_now = await sdk.order(old), await sdk.order(new)
        assert old_now.status == OrderStatus.REPLACED and old_now.replaced_by == new.id
        assert old_now.replaced_at is not None
        assert new_now.status == OrderStatus.NEW and new_now.replaces == old.id
        assert (Decimal(str(new_now.qty)), Decimal(str(new_now.limit_price))) == (
            3,
            Decimal("155.5"),
        )
        # Terms not sent are the old order's.
        assert (new_now.side, new_now.time_in_force) == (OrderSide.BUY, TimeInForce.GTC)


async def test_a_replace_that_loses_the_race_with_a_fill_is_rejected_and_the_fill_stands() -> None:
    async with sdk_on_sim(autofill=False, replace_delay_s=None) as (sim, sdk, updates):
        old = await sdk.place(resting_buy(limit=190.0))  # marketable; fills when told
        new = await sdk.replace(old, limit_price=189.0)
        assert (await sdk.order(old)).status == OrderStatus.PENDING_REPLACE
        with pytest.raises(APIError) as refused:  # Alpaca refuses cancels while replacing
            await sdk(sdk.client.cancel_order_by_id, old.id)
        assert refused.value.status_code == 422
        sim.venue.execute(str(old.id))  # the old order fills before the replace lands
        sim.venue.complete_replace(str(new.id))

        assert updates.of(new) == ["rejected"]
        assert (await sdk.order(new)).status == OrderStatus.REJECTED
        filled = await sdk.order(old)
        assert filled.status == OrderStatus.FILLED and filled.replaced_by is None
        positions = await sdk(sdk.client.get_all_positions)
        assert [(p.symbol, p.qty) for p in positions] == [("AAPL", "2")]  # type: ignore[union-attr]
        with pytest.raises(APIError) as too_late:
            await sdk.replace(old, limit_price=188.0)
        assert too_late.value.status_code == 422 and "filled" in str(too_late.value)


async def test_a_partial_fill_before_a_replace_is_kept_on_the_old_order() -> None:
    async with sdk_on_sim(autofill=False) as (sim, sdk, updates):
        old = await sdk.place(resting_buy(qty=4))
        sim.venue.execute(str(old.id), qty=Decimal(1), price=Decimal("150"))
        new = await sdk.replace(old, qty=3, limit_price=151.0)  # the 3 still wanted
        await updates.wait("new", new)

        kept = await sdk.order(old)
        assert kept.status == OrderStatus.REPLACED and kept.filled_qty == "1"
        fresh = await sdk.order(new)
        assert (fresh.qty, fresh.filled_qty, fresh.status) == ("3", "0", OrderStatus.NEW)
        position = await sdk(sdk.client.get_open_position, "AAPL")
        assert position.qty == "1"  # type: ignore[union-attr]


async def test_a_bracket_entry_fill_releases_its_exits_and_the_stop_cancels_the_take_profit() -> (
    None
):
    async with sdk_on_sim() as (sim, sdk, updates):
        entry = await sdk.place(
            LimitOrderRequest(
                symbol="AAPL",
                qty=2,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                limit_price=190.0,
                order_class=OrderClass.BRACKET,
                take_profit=TakeProfitRequest(limit_price=200.0),
                stop_loss=StopLossRequest(stop_price=180.0),
            )
        )
        assert entry.order_class == OrderClass.BRACKET and entry.legs is not None
        take_profit, stop_loss = entry.legs
        assert (take_profit.type, take_profit.limit_price) == ("limit", "200")
        assert (stop_loss.type, stop_loss.stop_price) == ("stop", "180")
        assert {leg.status for leg in entry.legs} == {OrderStatus.HELD}
        assert {leg.side for leg in entry.legs} == {OrderSide.SELL}

        await updates.wait("fill", entry)
        await updates.wait("new", take_profit)
        await updates.wait("new", stop_loss)
        live = await sdk.order(entry)
        assert live.legs is not None
        assert [leg.status for leg in live.legs] == [OrderStatus.NEW, OrderStatus.NEW]

        sim.venue.set_price("AAPL", Decimal("179.00"))
        await updates.wait("fill", stop_loss)
        assert updates.of(take_profit) == ["new", "canceled"]
        assert (await sdk.order(take_profit)).status == OrderStatus.CANCELED
        assert await sdk(sdk.client.get_all_positions) == []
        # nested=true rolls the legs under their parent.
        listed = await sdk(
            sdk.client.get_orders,
            GetOrdersRequest(status="all", nested=True),  # type: ignore[arg-type]
        )
        assert [o.id for o in listed] == [entry.id]  # type: ignore[union-attr]


async def test_an_oco_fill_cancels_the_other_exit() -> None:
    async with sdk_on_sim() as (sim, sdk, updates):
        bought = await sdk.place(
            MarketOrderRequest(
                symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
        )
        await updates.wait("fill", bought)
        take_profit = await sdk.place(
            LimitOrderRequest(
                symbol="AAPL",
                qty=5,
                side=OrderSide.SELL,
                time_in_force=TimeInForce.GTC,
                order_class=OrderClass.OCO,
                take_profit=TakeProfitRequest(limit_price=200.0),
                stop_loss=StopLossRequest(stop_price=180.0, limit_price=179.5),
            )
        )
        assert take_profit.legs is not None
        (stop_loss,) = take_profit.legs
        assert (take_profit.limit_price, take_profit.status) == ("200", OrderStatus.NEW)
        assert (stop_loss.type, stop_loss.status) == ("stop_limit", OrderStatus.NEW)
        position = await sdk(sdk.client.get_open_position, "AAPL")
        assert position.qty_available == "0"  # type: ignore[union-attr]  # held once, not twice

        sim.venue.set_price("AAPL", Decimal("201.00"))
        await updates.wait("fill", take_profit)
        assert updates.of(stop_loss) == ["new", "canceled"]
        assert await sdk(sdk.client.get_all_positions) == []


async def test_canceling_a_parent_cancels_its_held_exits_and_an_oto_waits_for_its_entry() -> None:
    async with sdk_on_sim(autofill=False) as (sim, sdk, _updates):
        bracket = await sdk.place(
            LimitOrderRequest(
                symbol="AAPL",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.DAY,
                limit_price=150.0,
                order_class=OrderClass.BRACKET,
                take_profit=TakeProfitRequest(limit_price=160.0),
                stop_loss=StopLossRequest(stop_price=140.0),
            )
        )
        await sdk(sdk.client.cancel_order_by_id, bracket.id)
        canceled = await sdk.order(bracket)
        assert canceled.legs is not None
        statuses = [canceled.status, *(leg.status for leg in canceled.legs)]
        assert statuses == [OrderStatus.CANCELED] * 3

        oto = await sdk.place(
            MarketOrderRequest(
                symbol="AAPL",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.DAY,
                order_class=OrderClass.OTO,
                stop_loss=StopLossRequest(stop_price=185.0),
            )
        )
        assert oto.legs is not None and [leg.status for leg in oto.legs] == [OrderStatus.HELD]
        sim.venue.execute(str(oto.id))
        released = await sdk.order(oto)
        assert released.legs is not None
        assert [leg.status for leg in released.legs] == [OrderStatus.NEW]


async def test_a_sell_of_more_than_is_held_is_refused_naming_the_quantities_as_numbers() -> None:
    async with sdk_on_sim() as (_, sdk, _updates):
        sell = MarketOrderRequest(
            symbol="AAPL", qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.DAY
        )
        with pytest.raises(APIError) as refused:
            await sdk.place(sell)
    assert "(requested: 10, available: 0)" in str(refused.value)
