"""OandaConnector's replace and brackets where v20 differs from the other venues.

The shared promises are in ``tests/brokers/contract_orders.py``; these are
OANDA's own: a lost replace reply found by the replacement's client id, the
rest of a partial fill reissued under a new v20 id yet one order of ours,
and a bracket's exits held on the entry until its fill creates them.
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial

import msgspec
import pytest
import trio

from tests.brokers.oanda.harness import connected, running_sim
from ult_actors.errors import BrokerUnavailable, InvalidOrder, NotReplaceable
from ult_actors.messages import OrderListRequest, OrderRequest, OrderUpdate, ReplaceRequest, Side
from ult_actors.sim.oanda.faults import Fault

WAIT_S = 10


def _for(client_order_id: str, update: OrderUpdate) -> bool:
    return update.order.client_order_id == client_order_id


def resting_buy(coid: str, qty: str = "1000", price: str = "1.08000") -> OrderRequest:
    return OrderRequest(
        symbol="EUR_USD",
        side="buy",
        qty=Decimal(qty),
        type="limit",
        limit_price=Decimal(price),
        time_in_force="gtc",
        client_order_id=coid,
    )


def bracket(entry: OrderRequest, take: str, stop: str) -> OrderListRequest:
    exit_side: Side = "sell" if entry.side == "buy" else "buy"
    return OrderListRequest(
        contingency="bracket",
        list_id=f"{entry.client_order_id}-list",
        legs=[
            entry,
            OrderRequest(
                symbol=entry.symbol,
                side=exit_side,
                qty=entry.qty,
                type="limit",
                limit_price=Decimal(take),
                time_in_force="gtc",
                client_order_id=f"{entry.client_order_id}-tp",
            ),
            OrderRequest(
                symbol=entry.symbol,
                side=exit_side,
                qty=entry.qty,
                type="stop",
                stop_price=Decimal(stop),
                time_in_force="gtc",
                client_order_id=f"{entry.client_order_id}-sl",
            ),
        ],
    )


async def test_a_replace_whose_reply_is_lost_is_found_by_its_client_id() -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (connector, _):
        old = await connector.submit(resting_buy("lost-1"))
        sim.arm(Fault(kind="lose_reply", method="PUT"))
        change = ReplaceRequest(
            order_id=old.id, limit_price=Decimal("1.07500"), client_order_id="lost-1-r"
        )
        with trio.fail_after(WAIT_S), pytest.raises(BrokerUnavailable, match="lost-1-r up by"):
            await connector.replace(old, change)

        found = await connector.get_order_by_client_id("lost-1-r")
        assert (found.status, found.replaces, found.limit_price) == (
            "accepted",
            "lost-1",
            Decimal("1.07500"),
        )
        before = await connector.get_order_by_client_id("lost-1")
        assert (before.status, before.replaced_by) == ("replaced", "lost-1-r")
        assert [o.client_order_id for o in await connector.open_orders()] == ["lost-1-r"]


async def test_the_rest_of_a_partial_fill_is_still_one_order_and_fills_add_up() -> None:
    async with running_sim() as sim, connected(sim) as (connector, log):
        order = await connector.submit(resting_buy("part-1", qty="2000"))
        sim.set_price("EUR_USD", {"bid": "1.07990", "ask": "1.08000", "liquidity": "500"})
        sim.set_price("EUR_USD", {"bid": "1.08493", "ask": "1.08507"})
        with trio.fail_after(WAIT_S):
            moved = await log.wait_for(lambda u: u.order.id not in ("", order.id))
        assert (moved.order.client_order_id, moved.order.status, moved.order.qty) == (
            "part-1",
            "partially_filled",
            Decimal(2000),
        )
        assert moved.order.filled_qty == Decimal(500)

        sim.set_price("EUR_USD", {"bid": "1.07780", "ask": "1.07790"})
        with trio.fail_after(WAIT_S):
            done = await log.wait_for(lambda u: u.order.status == "filled")
        assert (done.order.id, done.order.filled_qty) == (moved.order.id, Decimal(2000))
        # 500 at 1.08000 and 1500 at 1.07790
        assert done.order.avg_fill_price == Decimal("1.078425")

        async with connected(sim, stream=False) as (restarted, _):  # nothing remembered
            again = await restarted.get_order_by_client_id("part-1")
        assert (again.status, again.qty, again.filled_qty, again.avg_fill_price) == (
            "filled",
            Decimal(2000),
            Decimal(2000),
            Decimal("1.078425"),
        )


async def test_bracket_exits_are_held_until_the_entry_fills_and_die_with_it() -> None:
    async with running_sim() as sim, connected(sim) as (connector, log):
        entry, take, stop = await connector.submit_list(
            bracket(resting_buy("br-1"), take="1.09000", stop="1.07000")
        )
        assert (entry.status, take.status, stop.status) == ("accepted", "held", "held")
        assert take.leg is not None and take.leg.parent_id == "br-1"
        assert (take.side, take.qty, take.limit_price) == ("sell", Decimal(1000), Decimal("1.09"))
        assert [o.client_order_id for o in await connector.open_orders()] == ["br-1"]
        with pytest.raises(InvalidOrder, match="cancel or replace the entry"):
            await connector.cancel("br-1-tp")
        async with connected(sim, stream=False) as (restarted, _):  # nothing remembered
            assert (await restarted.get_order_by_client_id("br-1-sl")).status == "held"

        await connector.cancel(entry.id)
        with trio.fail_after(WAIT_S):
            for coid in ("br-1-tp", "br-1-sl"):
                gone = await log.wait_for(partial(_for, coid))
                assert gone.order.status == "canceled"
                assert gone.order.reject_reason == "its entry br-1 is canceled"
        async with connected(sim, stream=False) as (restarted, _):  # found on the entry
            found = await restarted.get_order_by_client_id("br-1-tp")
        assert (found.status, found.reject_reason) == ("canceled", "its entry br-1 is canceled")


async def test_a_replaced_bracket_entry_keeps_its_exits() -> None:
    async with running_sim() as sim, connected(sim) as (connector, log):
        entry, _, _ = await connector.submit_list(
            bracket(resting_buy("br-2"), take="1.09000", stop="1.06000")
        )
        moved = await connector.replace(
            entry,
            ReplaceRequest(
                order_id=entry.id, limit_price=Decimal("1.07000"), client_order_id="br-2-r"
            ),
        )
        assert moved.leg == entry.leg
        sim.set_price("EUR_USD", {"bid": "1.06990", "ask": "1.07000"})
        with trio.fail_after(WAIT_S):
            take = await log.wait_for(lambda u: u.order.client_order_id == "br-2-tp")
        assert (take.order.status, take.order.type, take.order.side) == (
            "accepted",
            "limit",
            "sell",
        )
        assert take.order.id != ""
        sim.set_price("EUR_USD", {"bid": "1.05990", "ask": "1.06000"})  # through the stop
        with trio.fail_after(WAIT_S):
            await log.wait_for(
                lambda u: u.order.client_order_id == "br-2-sl" and u.order.status == "filled"
            )
            await log.wait_for(
                lambda u: u.order.client_order_id == "br-2-tp" and u.order.status == "canceled"
            )


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"type": "stop_limit", "limit_price": Decimal("1.06900")}, "not stop_limit"),
        ({"qty": Decimal(500)}, "same symbol and qty"),
        ({"time_in_force": "ioc"}, "gtc or day"),
    ],
)
async def test_a_bracket_oanda_cannot_carry_is_refused_before_it_is_sent(
    change: dict[str, object], complaint: str
) -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (connector, _):
        request = bracket(resting_buy("br-3"), take="1.09000", stop="1.07000")
        bad_stop = msgspec.structs.replace(request.legs[2], **change)
        mark = sim.book.last_id
        with pytest.raises(InvalidOrder, match=complaint):
            await connector.submit_list(
                OrderListRequest(
                    contingency="bracket", legs=[request.legs[0], request.legs[1], bad_stop]
                )
            )
        assert sim.book.last_id == mark  # nothing reached the venue


async def test_a_working_take_profit_is_replaced_on_its_trade_and_a_held_one_is_refused() -> None:
    async with running_sim() as sim, connected(sim) as (connector, log):
        _, take, _ = await connector.submit_list(
            bracket(resting_buy("br-4"), take="1.09000", stop="1.06000")
        )
        held_change = ReplaceRequest(
            order_id="", limit_price=Decimal("1.09500"), client_order_id="br-4-tp-r"
        )
        with pytest.raises(NotReplaceable, match="is held"):
            await connector.replace(take, held_change)

        sim.set_price("EUR_USD", {"bid": "1.07990", "ask": "1.08000"})  # the entry fills
        with trio.fail_after(WAIT_S):
            working = await log.wait_for(
                lambda u: u.order.client_order_id == "br-4-tp" and u.order.status == "accepted"
            )
        working_take = msgspec.structs.replace(working.order, leg=take.leg)
        with pytest.raises(InvalidOrder, match="closes its whole OANDA trade"):
            await connector.replace(
                working_take,
                ReplaceRequest(order_id="", qty=Decimal(500), client_order_id="br-4-tp-q"),
            )
        new = await connector.replace(
            working_take, msgspec.structs.replace(held_change, order_id=working.order.id)
        )
        assert (new.client_order_id, new.replaces, new.limit_price) == (
            "br-4-tp-r",
            "br-4-tp",
            Decimal("1.09500"),
        )
        with trio.fail_after(WAIT_S):
            old = await log.wait_for(
                lambda u: u.order.client_order_id == "br-4-tp" and u.order.status == "replaced"
            )
        assert old.order.replaced_by == "br-4-tp-r"
        (trade,) = sim.book.open_trades("EUR_USD")
        (on_trade,) = [o for o in sim.book.pending() if o.type == "TAKE_PROFIT"]
        assert (on_trade.trade_id, on_trade.price) == (trade.id, Decimal("1.09500"))
        sim.set_price("EUR_USD", {"bid": "1.09500", "ask": "1.09510"})
        with trio.fail_after(WAIT_S):
            await log.wait_for(
                lambda u: u.order.client_order_id == "br-4-tp-r" and u.order.status == "filled"
            )
            await log.wait_for(
                lambda u: u.order.client_order_id == "br-4-sl" and u.order.status == "canceled"
            )


async def test_a_bracket_whose_entry_fills_or_fails_at_once_returns_its_exits_as_they_are() -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (connector, _):
        market = OrderRequest(
            symbol="EUR_USD", side="buy", qty=Decimal(1000), client_order_id="br-5"
        )
        entry, take, stop = await connector.submit_list(
            bracket(market, take="1.09000", stop="1.08000")
        )
        assert (entry.status, take.status, stop.status) == ("filled", "accepted", "accepted")
        on_trade = {o.id for o in sim.book.pending()}
        assert {take.id, stop.id} == on_trade
        assert take.leg is not None and (take.leg.role, take.leg.parent_id) == (
            "take_profit",
            "br-5",
        )

        losing = msgspec.structs.replace(market, client_order_id="br-6")
        entry, take, stop = await connector.submit_list(
            bracket(losing, take="1.08000", stop="1.07000")  # a take profit below the buy's fill
        )
        assert (entry.status, entry.reject_reason) == ("rejected", "TAKE_PROFIT_ON_FILL_LOSS")
        assert (take.status, stop.status) == ("canceled", "canceled")


async def test_a_bracket_entry_that_only_reduces_a_trade_ends_its_exits() -> None:
    async with running_sim() as sim, connected(sim) as (connector, log):
        short = OrderRequest(
            symbol="EUR_USD", side="sell", qty=Decimal(1000), client_order_id="short-1"
        )
        await connector.submit(short)
        await connector.submit_list(bracket(resting_buy("br-7"), take="1.09000", stop="1.07000"))
        sim.set_price("EUR_USD", {"bid": "1.07990", "ask": "1.08000"})  # the buy closes the short
        with trio.fail_after(WAIT_S):
            for coid in ("br-7-tp", "br-7-sl"):
                gone = await log.wait_for(partial(_for, coid))
                assert (gone.order.status, gone.order.reject_reason) == (
                    "canceled",
                    "its entry br-7 is filled",
                )
        assert sim.book.pending() == []  # v20 made no exits: no trade was opened
