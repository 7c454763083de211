"""Replace and orders on a trade at the OANDA simulator, driven by oandapyV20 over loopback.

Each test does what a user of the real venue would do with OANDA's own
community SDK (``OrderReplace``, ``OrderCreate`` with ``takeProfitOnFill``,
``TAKE_PROFIT``/``STOP_LOSS`` orders on a ``tradeID``) and checks what v20
would answer. Prices are frozen (the walk never steps) and moved by the test
with ``set_price``, so every fill happens exactly when the test says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import oandapyV20.endpoints.orders as orders
import oandapyV20.endpoints.positions as positions
import oandapyV20.endpoints.trades as trades
import oandapyV20.endpoints.transactions as transactions
import pytest
import trio
from oandapyV20 import API
from oandapyV20 import oandapyV20 as sdk
from oandapyV20.endpoints.apirequest import APIRequest
from oandapyV20.exceptions import StreamTerminated, V20Error

from tests.brokers.oanda.harness import ACCOUNT, TOKEN, running_sim
from ult_actors.sim.oanda.server import OandaSimulator

Call = Callable[[APIRequest], Awaitable[dict[str, Any]]]

# EUR_USD opens at bid 1.08493 / ask 1.08507 and stays there until a test moves it.
BELOW = "1.08000"
ABOVE = "1.09000"


@asynccontextmanager
async def venue(
    monkeypatch: pytest.MonkeyPatch, **options: Any
) -> AsyncIterator[tuple[OandaSimulator, Call]]:
    """The simulator, and a way to send it one oandapyV20 request (in a worker thread)."""
    async with running_sim(**options) as sim:
        monkeypatch.setitem(
            sdk.TRADING_ENVIRONMENTS, "sim", {"api": sim.base_url, "stream": sim.base_url}
        )
        api = API(access_token=TOKEN, environment="sim")

        async def call(endpoint: APIRequest) -> dict[str, Any]:
            with trio.fail_after(20):
                reply: dict[str, Any] = await trio.to_thread.run_sync(api.request, endpoint)
            return reply

        yield sim, call


def market(units: str, **extra: Any) -> dict[str, Any]:
    return {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": units, **extra}}


def limit(units: str, price: str, client_id: str, **extra: Any) -> dict[str, Any]:
    spec = {"type": "LIMIT", "instrument": "EUR_USD", "units": units, "price": price}
    return {"order": {**spec, "clientExtensions": {"id": client_id}, **extra}}


async def details(call: Call, specifier: str) -> dict[str, Any]:
    return (await call(orders.OrderDetails(ACCOUNT, specifier)))["order"]


async def since(call: Call, last_id: str) -> list[dict[str, Any]]:
    reply = await call(transactions.TransactionsSinceID(ACCOUNT, params={"id": last_id}))
    return list(reply["transactions"])


async def test_replace_cancels_and_creates_in_one_batch_linked_both_ways(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (sim, call):
        placed = await call(orders.OrderCreate(ACCOUNT, limit("1000", BELOW, "entry-1")))
        old_id = placed["orderCreateTransaction"]["id"]

        body = limit("1500", "1.08100", "entry-1-r1")
        replaced = await call(orders.OrderReplace(ACCOUNT, "@entry-1", body))

        cancel = replaced["orderCancelTransaction"]
        create = replaced["orderCreateTransaction"]
        new_id = create["id"]
        assert new_id != old_id
        assert (cancel["type"], cancel["reason"], cancel["orderID"]) == (
            "ORDER_CANCEL",
            "CLIENT_REQUEST_REPLACED",
            old_id,
        )
        assert cancel["replacedByOrderID"] == new_id
        assert (create["type"], create["reason"], create["replacesOrderID"]) == (
            "LIMIT_ORDER",
            "REPLACEMENT",
            old_id,
        )
        assert create["batchID"] == cancel["batchID"] == cancel["id"]
        assert replaced["relatedTransactionIDs"] == [cancel["id"], new_id]
        old, new = await details(call, old_id), await details(call, "@entry-1-r1")
        assert (old["state"], old["replacedByOrderID"]) == ("CANCELLED", new_id)
        assert (new["state"], new["replacesOrderID"], new["units"], new["price"]) == (
            "PENDING",
            old_id,
            "1500",
            "1.08100",
        )
        pending = (await call(orders.OrdersPending(ACCOUNT)))["orders"]
        assert [o["id"] for o in pending] == [new_id]
        assert sim.book.last_id == new_id


async def test_replace_that_loses_the_race_with_a_fill_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (sim, call):
        await call(orders.OrderCreate(ACCOUNT, limit("1000", BELOW, "racer")))
        sim.set_price("EUR_USD", "1.07990")  # the buy limit fills first
        with pytest.raises(V20Error) as refused:
            await call(orders.OrderReplace(ACCOUNT, "@racer", limit("1000", "1.07000", "racer-r")))
        assert refused.value.code == 404
        assert "ORDER_DOESNT_EXIST" in str(refused.value)
        assert (await details(call, "@racer"))["state"] == "FILLED"
        with pytest.raises(V20Error):
            await details(call, "@racer-r")  # nothing was created
        (trade,) = (await call(trades.OpenTrades(ACCOUNT)))["trades"]
        assert trade["currentUnits"] == "1000"


async def test_an_invalid_replacement_leaves_the_order_working(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (_, call):
        placed = await call(orders.OrderCreate(ACCOUNT, limit("1000", BELOW, "keep")))
        with pytest.raises(V20Error) as refused:
            await call(orders.OrderReplace(ACCOUNT, "@keep", limit("0", BELOW, "keep-r")))
        assert refused.value.code == 400 and "UNITS_INVALID" in str(refused.value)
        kept = await details(call, "@keep")
        assert (kept["id"], kept["state"]) == (placed["orderCreateTransaction"]["id"], "PENDING")


async def test_a_bracket_entry_releases_its_exits_on_the_trade_when_it_fills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (sim, call):
        body = limit(
            "1000",
            BELOW,
            "bracket",
            takeProfitOnFill={"price": "1.09500", "clientExtensions": {"id": "bracket-tp"}},
            stopLossOnFill={"price": "1.07500", "clientExtensions": {"id": "bracket-sl"}},
        )
        placed = await call(orders.OrderCreate(ACCOUNT, body))
        assert placed["orderCreateTransaction"]["takeProfitOnFill"]["price"] == "1.09500"
        assert [o["type"] for o in (await call(orders.OrdersPending(ACCOUNT)))["orders"]] == [
            "LIMIT"
        ]
        mark = sim.book.last_id

        sim.set_price("EUR_USD", "1.07990")

        fill, take, stop = await since(call, mark)
        trade_id = fill["tradeOpened"]["tradeID"]
        assert (fill["type"], fill["reason"], fill["clientOrderID"]) == (
            "ORDER_FILL",
            "LIMIT_ORDER",
            "bracket",
        )
        assert (take["type"], take["reason"], take["tradeID"], take["price"]) == (
            "TAKE_PROFIT_ORDER",
            "ON_FILL",
            trade_id,
            "1.09500",
        )
        assert (stop["type"], stop["reason"], stop["tradeID"]) == (
            "STOP_LOSS_ORDER",
            "ON_FILL",
            trade_id,
        )
        assert take["orderFillTransactionID"] == stop["orderFillTransactionID"] == fill["id"]
        assert take["batchID"] == stop["batchID"] == fill["batchID"]
        trade = (await call(trades.TradeDetails(ACCOUNT, trade_id)))["trade"]
        assert trade["takeProfitOrder"]["id"] == take["id"]
        assert trade["stopLossOrder"]["clientExtensions"] == {"id": "bracket-sl"}
        assert (await details(call, "@bracket-tp"))["state"] == "PENDING"


async def test_the_stop_loss_closes_the_trade_and_cancels_the_take_profit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (sim, call):
        body = market(
            "-2000",
            takeProfitOnFill={"price": "1.08000"},
            stopLossOnFill={"distance": "0.00500"},
        )
        opened = await call(orders.OrderCreate(ACCOUNT, body))
        trade_id = opened["orderFillTransaction"]["tradeOpened"]["tradeID"]
        stop = (await call(trades.TradeDetails(ACCOUNT, trade_id)))["trade"]["stopLossOrder"]
        assert stop["price"] == "1.08993"  # the sell filled at the bid, 1.08493, + 0.00500
        mark = sim.book.last_id

        sim.set_price("EUR_USD", "1.09000")  # ask 1.09007: through the short's stop

        fill, linked = await since(call, mark)
        assert (fill["type"], fill["reason"], fill["orderID"]) == (
            "ORDER_FILL",
            "STOP_LOSS_ORDER",
            stop["id"],
        )
        assert fill["units"] == "2000"
        assert fill["tradesClosed"][0]["tradeID"] == trade_id
        assert (linked["type"], linked["reason"]) == ("ORDER_CANCEL", "LINKED_TRADE_CLOSED")
        take = (await call(trades.TradeDetails(ACCOUNT, trade_id)))["trade"]
        assert take["state"] == "CLOSED" and "takeProfitOrder" not in take
        assert (await details(call, linked["orderID"]))["type"] == "TAKE_PROFIT"
        assert (await call(orders.OrdersPending(ACCOUNT)))["orders"] == []
        assert (await call(positions.OpenPositions(ACCOUNT)))["positions"] == []


async def test_exits_placed_on_an_open_trade_are_one_cancels_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (sim, call):
        opened = await call(orders.OrderCreate(ACCOUNT, market("1000")))
        trade_id = opened["orderFillTransaction"]["tradeOpened"]["tradeID"]
        take_body = {"order": {"type": "TAKE_PROFIT", "tradeID": trade_id, "price": ABOVE}}
        stop_body = {"order": {"type": "STOP_LOSS", "tradeID": trade_id, "price": BELOW}}
        take = (await call(orders.OrderCreate(ACCOUNT, take_body)))["orderCreateTransaction"]
        stop = (await call(orders.OrderCreate(ACCOUNT, stop_body)))["orderCreateTransaction"]
        assert (take["type"], take["reason"]) == ("TAKE_PROFIT_ORDER", "CLIENT_ORDER")
        with pytest.raises(V20Error) as twice:
            await call(orders.OrderCreate(ACCOUNT, take_body))
        assert "TAKE_PROFIT_ORDER_ALREADY_EXISTS" in str(twice.value)
        with pytest.raises(V20Error) as nowhere:
            await call(
                orders.OrderCreate(ACCOUNT, {"order": {**take_body["order"], "tradeID": "999"}})
            )
        assert "TRADE_DOESNT_EXIST" in str(nowhere.value)

        sim.set_price("EUR_USD", "1.09010")  # bid 1.09003: the take profit's price

        assert (await details(call, take["id"]))["state"] == "FILLED"
        cancelled = await details(call, stop["id"])
        assert cancelled["state"] == "CANCELLED"
        reason = await call(
            transactions.TransactionDetails(ACCOUNT, cancelled["cancellingTransactionID"])
        )
        assert reason["transaction"]["reason"] == "LINKED_TRADE_CLOSED"
        assert (await call(trades.OpenTrades(ACCOUNT)))["trades"] == []


async def test_cancelling_the_entry_or_closing_the_trade_cancels_the_exits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (sim, call):
        exits = {"takeProfitOnFill": {"price": "1.09500"}, "stopLossOnFill": {"price": "1.07000"}}
        await call(orders.OrderCreate(ACCOUNT, limit("1000", BELOW, "never", **exits)))
        await call(orders.OrderCancel(ACCOUNT, "@never"))
        sim.set_price("EUR_USD", "1.07990")  # where the entry would have filled
        assert (await call(orders.OrdersPending(ACCOUNT)))["orders"] == []
        assert (await call(trades.OpenTrades(ACCOUNT)))["trades"] == []

        await call(orders.OrderCreate(ACCOUNT, market("1000", **exits)))
        assert len((await call(orders.OrdersPending(ACCOUNT)))["orders"]) == 2
        mark = sim.book.last_id
        await call(positions.PositionClose(ACCOUNT, "EUR_USD", {"longUnits": "ALL"}))
        cancels = [t for t in await since(call, mark) if t["type"] == "ORDER_CANCEL"]
        assert [t["reason"] for t in cancels] == ["LINKED_TRADE_CLOSED"] * 2
        assert (await call(orders.OrdersPending(ACCOUNT)))["orders"] == []


async def test_an_entry_whose_take_profit_would_lose_is_cancelled_unfilled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (_, call):
        losing = {"price": "1.08000"}  # below the ask the buy fills at
        reply = await call(orders.OrderCreate(ACCOUNT, market("1000", takeProfitOnFill=losing)))
        assert reply["orderCancelTransaction"]["reason"] == "TAKE_PROFIT_ON_FILL_LOSS"
        assert "orderFillTransaction" not in reply


async def test_a_trailing_stop_follows_the_price_and_never_backs_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (sim, call):
        trailing_stop = {"distance": "0.00200"}
        body = market("1000", trailingStopLossOnFill=trailing_stop)
        opened = await call(orders.OrderCreate(ACCOUNT, body))
        trade_id = opened["orderFillTransaction"]["tradeOpened"]["tradeID"]

        async def trailing() -> dict[str, Any]:
            trade = (await call(trades.TradeDetails(ACCOUNT, trade_id)))["trade"]
            return dict(trade["trailingStopLossOrder"])

        assert (await trailing())["trailingStopValue"] == "1.08293"  # bid 1.08493 - 0.00200
        sim.set_price("EUR_USD", "1.08700")  # bid 1.08693
        assert (await trailing())["trailingStopValue"] == "1.08493"
        sim.set_price("EUR_USD", "1.08600")  # bid 1.08593: up from the stop, no move back
        assert (await trailing())["trailingStopValue"] == "1.08493"
        sim.set_price("EUR_USD", "1.08490")  # bid 1.08483: through it
        assert (await call(trades.OpenTrades(ACCOUNT)))["trades"] == []


async def test_a_partial_fill_reissues_the_rest_and_a_replace_keeps_the_fill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (sim, call):
        placed = await call(orders.OrderCreate(ACCOUNT, limit("1000", BELOW, "part")))
        first_id = placed["orderCreateTransaction"]["id"]
        mark = sim.book.last_id

        sim.set_price("EUR_USD", {"bid": "1.07976", "ask": "1.07990", "liquidity": "400"})

        fill, reissue = await since(call, mark)
        assert (fill["orderID"], fill["units"], fill["requestedUnits"]) == (first_id, "400", "1000")
        assert (reissue["type"], reissue["reason"], reissue["replacesOrderID"]) == (
            "LIMIT_ORDER",
            "REPLACEMENT",
            first_id,
        )
        assert reissue["units"] == "600" and reissue["batchID"] == fill["batchID"]
        first = await details(call, first_id)
        assert (first["state"], first["replacedByOrderID"]) == ("FILLED", reissue["id"])
        assert (await details(call, "@part"))["id"] == reissue["id"]

        body = limit("600", "1.07500", "part-r1")
        replaced = await call(orders.OrderReplace(ACCOUNT, "@part", body))
        assert replaced["orderCancelTransaction"]["orderID"] == reissue["id"]
        assert (await details(call, "@part-r1"))["replacesOrderID"] == reissue["id"]
        (trade,) = (await call(trades.OpenTrades(ACCOUNT)))["trades"]
        assert trade["currentUnits"] == "400"  # the fill before the replace is kept


async def test_short_liquidity_cancels_fok_and_ends_ioc_without_a_reissue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (sim, call):
        sim.set_price("EUR_USD", {"bid": "1.08493", "ask": "1.08507", "liquidity": "300"})
        fok = await call(orders.OrderCreate(ACCOUNT, market("1000")))
        assert fok["orderCancelTransaction"]["reason"] == "INSUFFICIENT_LIQUIDITY"
        ioc = await call(orders.OrderCreate(ACCOUNT, market("1000", timeInForce="IOC")))
        assert ioc["orderFillTransaction"]["units"] == "300"
        assert "orderReissueTransaction" not in ioc
        assert (await call(orders.OrdersPending(ACCOUNT)))["orders"] == []
        gone = await call(orders.OrderCreate(ACCOUNT, market("1000", timeInForce="IOC")))
        assert gone["orderCancelTransaction"]["reason"] == "INSUFFICIENT_LIQUIDITY"


async def test_the_orders_on_a_trade_are_set_replaced_and_cancelled_through_the_trade(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch) as (_, call):
        opened = await call(orders.OrderCreate(ACCOUNT, market("1000")))
        trade_id = opened["orderFillTransaction"]["tradeOpened"]["tradeID"]

        both = {"takeProfit": {"price": ABOVE}, "stopLoss": {"price": BELOW}}
        made = await call(trades.TradeCRCDO(ACCOUNT, trade_id, both))
        take, stop = made["takeProfitOrderTransaction"], made["stopLossOrderTransaction"]
        assert (take["type"], stop["type"]) == ("TAKE_PROFIT_ORDER", "STOP_LOSS_ORDER")
        assert take["batchID"] == stop["batchID"]

        changed = await call(
            trades.TradeCRCDO(
                ACCOUNT, trade_id, {"stopLoss": {"price": "1.08100"}, "takeProfit": None}
            )
        )
        moved = changed["stopLossOrderTransaction"]
        assert changed["stopLossOrderCancelTransaction"]["reason"] == "CLIENT_REQUEST_REPLACED"
        assert (moved["reason"], moved["replacesOrderID"]) == ("REPLACEMENT", stop["id"])
        assert changed["takeProfitOrderCancelTransaction"]["reason"] == "CLIENT_REQUEST"
        trade = (await call(trades.TradeDetails(ACCOUNT, trade_id)))["trade"]
        assert trade["stopLossOrder"]["price"] == "1.08100" and "takeProfitOrder" not in trade

        with pytest.raises(V20Error) as refused:
            await call(trades.TradeCRCDO(ACCOUNT, trade_id, {"stopLoss": {"price": "-1"}}))
        assert refused.value.code == 400 and "PRICE_INVALID" in str(refused.value)
        still = (await call(trades.TradeDetails(ACCOUNT, trade_id)))["trade"]["stopLossOrder"]
        assert still["id"] == moved["id"]


def _stream_until_linked_cancel(heard: Callable[[], None]) -> list[dict[str, Any]]:
    """oandapyV20's transaction stream, read until an order is cancelled LINKED_TRADE_CLOSED."""
    api = API(access_token=TOKEN, environment="sim")
    stream = transactions.TransactionsStream(ACCOUNT)
    seen: list[dict[str, Any]] = []
    try:
        for line in api.request(stream):
            if line["type"] == "HEARTBEAT":
                trio.from_thread.run_sync(heard)  # connected: the test may go on
                continue
            seen.append(line)
            if line.get("reason") == "LINKED_TRADE_CLOSED":
                stream.terminate("seen")
    except StreamTerminated:
        pass
    return seen


async def test_the_transaction_stream_carries_a_bracket_from_entry_to_linked_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with venue(monkeypatch, heartbeat_s=0.05) as (sim, call):
        listening = trio.Event()
        seen: list[dict[str, Any]] = []

        async def read() -> None:
            seen.extend(await trio.to_thread.run_sync(_stream_until_linked_cancel, listening.set))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await listening.wait()
                exits = {
                    "takeProfitOnFill": {"price": "1.09500"},
                    "stopLossOnFill": {"price": "1.07500"},
                }
                await call(orders.OrderCreate(ACCOUNT, limit("1000", BELOW, "streamed", **exits)))
                replaced = limit("1000", "1.08100", "streamed-r", **exits)
                await call(orders.OrderReplace(ACCOUNT, "@streamed", replaced))
                sim.set_price("EUR_USD", "1.08000")  # ask 1.08007: the replacement fills
                sim.set_price("EUR_USD", "1.07400")  # bid 1.07393: through the stop loss
        got = [(t["type"], t.get("reason")) for t in seen]
        assert got == [
            ("LIMIT_ORDER", "CLIENT_ORDER"),
            ("ORDER_CANCEL", "CLIENT_REQUEST_REPLACED"),
            ("LIMIT_ORDER", "REPLACEMENT"),
            ("ORDER_FILL", "LIMIT_ORDER"),
            ("TAKE_PROFIT_ORDER", "ON_FILL"),
            ("STOP_LOSS_ORDER", "ON_FILL"),
            ("ORDER_FILL", "STOP_LOSS_ORDER"),
            ("ORDER_CANCEL", "LINKED_TRADE_CLOSED"),
        ]
        opened = seen[3]["tradeOpened"]["tradeID"]
        assert seen[6]["tradesClosed"][0]["tradeID"] == opened
        assert seen[7]["orderID"] == seen[4]["id"]  # the take profit went with the trade
