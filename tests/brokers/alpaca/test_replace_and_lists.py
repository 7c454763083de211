"""Alpaca's own ways with replaces and order lists, as the connector answers them.

Beyond the contract battery: a replace that Alpaca accepts and then rejects
because a fill got there first, a replace whose reply was lost and is sent
again, and order lists Alpaca could not carry, refused before anything is sent.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from tests.brokers.alpaca.harness import connected, running_sim
from ult_actors.errors import BrokerUnavailable, InvalidOrder, NotReplaceable
from ult_actors.messages import Order, OrderListRequest, OrderRequest, ReplaceRequest
from ult_actors.sim.alpaca.faults import Fault


def resting_buy(coid: str, qty: str = "2") -> OrderRequest:
    return OrderRequest(
        symbol="AAPL",
        side="buy",
        qty=Decimal(qty),
        type="limit",
        limit_price=Decimal("150"),
        time_in_force="gtc",
        client_order_id=coid,
    )


async def test_a_fill_that_beats_the_replace_to_market_refuses_it_and_keeps_the_fill() -> None:
    async with (
        running_sim(autofill=False, replace_delay_s=None) as (sim, port),
        connected(port) as (conn, log),
    ):
        old = await conn.submit(resting_buy("race-1"))
        refused: list[BaseException] = []

        async def replace() -> None:
            change = ReplaceRequest(
                order_id=old.id, limit_price=Decimal("151"), client_order_id="race-1-r"
            )
            try:
                await conn.replace(old, change)
            except NotReplaceable as exc:
                refused.append(exc)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(replace)
                # Alpaca took the PATCH (the old order is pending_replace); then the old fills
                # before the replacement reaches the market, which rejects it.
                await log.wait_for(
                    lambda u: u.order.id == old.id and u.order.status == "pending_replace"
                )
                new_id = sim.venue.get_by_client_id("race-1-r").id
                sim.venue.execute(old.id)
                sim.venue.complete_replace(new_id)
        assert len(refused) == 1 and "filled" in str(refused[0])
        filled = await log.wait_for(lambda u: u.order.id == old.id and u.order.status == "filled")
        assert filled.order.filled_qty == 2
        assert (await conn.get_order_by_client_id("race-1-r")).status == "rejected"


async def test_a_replace_whose_reply_was_lost_is_found_and_not_applied_twice() -> None:
    async with running_sim() as (sim, port), connected(port) as (conn, log):
        old = await conn.submit(resting_buy("lost-1"))
        change = ReplaceRequest(order_id=old.id, qty=Decimal(5), client_order_id="lost-1-r")
        sim.arm(Fault(kind="lose_reply", method="PATCH"))
        with trio.fail_after(10), pytest.raises(BrokerUnavailable) as lost:
            await conn.replace(old, change)
        assert "look it up by client order id" in lost.value.message
        found = await conn.get_order_by_client_id("lost-1-r")
        assert (found.replaces, found.qty) == ("lost-1", 5)

        with trio.fail_after(10):
            again = await conn.replace(old, change)  # sent again all the same
        assert again.id == found.id
        assert [o.client_order_id for o in sim.venue.orders.values()] == ["lost-1", "lost-1-r"]
        replaced = await log.wait_for(lambda u: u.order.status == "replaced")
        assert (replaced.order.client_order_id, replaced.order.replaced_by) == (
            "lost-1",
            "lost-1-r",
        )


async def test_a_replace_after_a_partial_fill_sends_alpaca_only_what_is_left() -> None:
    async with running_sim(autofill=False) as (sim, port), connected(port) as (conn, log):
        old = await conn.submit(resting_buy("part-1", qty="4"))
        sim.venue.execute(old.id, Decimal(1))
        partly = await log.wait_for(lambda u: u.order.status == "partially_filled")
        with trio.fail_after(10):
            new = await conn.replace(
                partly.order,
                ReplaceRequest(order_id=old.id, qty=Decimal(6), client_order_id="part-1-r"),
            )
        # A new total of 6 with 1 filled: Alpaca's new order is for the 5 left.
        assert (new.qty, new.filled_qty) == (5, 0)
        assert sim.venue.get_by_client_id("part-1-r").qty == 5


def leg(coid: str, side: str, kind: str, **prices: Decimal) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL",
        side=side,  # type: ignore[arg-type]
        qty=Decimal(prices.pop("qty", Decimal(2))),
        type=kind,  # type: ignore[arg-type]
        time_in_force="gtc",
        client_order_id=coid,
        **prices,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("contingency", "legs", "says"),
    [
        (
            "bracket",
            [
                leg("b-e", "buy", "limit", limit_price=Decimal(150)),
                leg("b-tp", "sell", "limit", limit_price=Decimal(160), qty=Decimal(1)),
                leg("b-sl", "sell", "stop", stop_price=Decimal(140)),
            ],
            "Alpaca sizes it",
        ),
        (
            "bracket",
            [
                leg("b-e", "buy", "limit", limit_price=Decimal(150)),
                leg("b-tp", "buy", "limit", limit_price=Decimal(160)),
                leg("b-sl", "sell", "stop", stop_price=Decimal(140)),
            ],
            "makes it a sell",
        ),
        (
            "oto",
            [leg("o-p", "buy", "limit", limit_price=Decimal(150)), leg("o-c", "sell", "market")],
            "is market",
        ),
        (
            "oco",
            [
                leg("c-tp", "sell", "limit", limit_price=Decimal(200)),
                leg("c-sl", "sell", "limit", limit_price=Decimal(180)),
            ],
            "is limit",
        ),
    ],
)
async def test_lists_alpaca_cannot_carry_are_refused_before_anything_is_sent(
    contingency: str, legs: list[OrderRequest], says: str
) -> None:
    async with running_sim() as (sim, port), connected(port, stream=False) as (conn, _):
        request = OrderListRequest(
            contingency=contingency,  # type: ignore[arg-type]
            legs=legs,
            list_id="list-1",
        )
        with pytest.raises(InvalidOrder, match=says):
            await conn.submit_list(request)
        assert sim.venue.stats.submits == 0


async def test_bracket_legs_come_back_and_are_reported_under_our_client_order_ids() -> None:
    async with running_sim(autofill=False) as (sim, port), connected(port) as (conn, log):
        entry, take_profit, stop_loss = await conn.submit_list(
            OrderListRequest(
                contingency="bracket",
                list_id="br-1",
                legs=[
                    leg("br-e", "buy", "limit", limit_price=Decimal(150)),
                    leg("br-tp", "sell", "limit", limit_price=Decimal(160)),
                    leg(
                        "br-sl",
                        "sell",
                        "stop_limit",
                        stop_price=Decimal(140),
                        limit_price=Decimal(139),
                    ),
                ],
            )
        )
        assert [o.status for o in (entry, take_profit, stop_loss)] == ["accepted", "held", "held"]
        assert stop_loss.leg is not None and stop_loss.leg.parent_id == "br-e"
        assert (stop_loss.type, stop_loss.limit_price) == ("stop_limit", 139)
        # Alpaca knows the exits by ids of its own; we by ours.
        assert sim.venue.orders[take_profit.id].client_order_id != "br-tp"
        assert (await conn.get_order_by_client_id("br-tp")).id == take_profit.id

        sim.venue.execute(entry.id)
        released: Order = (
            await log.wait_for(
                lambda u: u.order.client_order_id == "br-tp" and u.order.status == "accepted"
            )
        ).order
        assert released.leg is not None and released.leg.role == "take_profit"
