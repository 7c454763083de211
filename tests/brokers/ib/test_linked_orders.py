"""The IB connector's replaces and order lists where TWS's own ways show.

The contract battery (``test_contract.py``) checks what every connector
promises; these cases are the ones only TWS has: a modify racing a fill
already at TWS, a replace whose answer a dropped socket swallowed (found by
the new client order id TWS carries as the orderRef), a bracket's exits
canceled with their entry, an exit modified in place keeping its leg.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio
import trio.testing

from tests.brokers.contract import UpdateLog
from tests.brokers.ib.harness import BOUND, streaming_connector
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.errors import BrokerUnavailable, NotReplaceable
from ult_actors.messages import Order, OrderListRequest, OrderRequest, ReplaceRequest
from ult_actors.sim.ib import TwsSimulator

LIMIT = Decimal("5.00")  # far below AAPL's price: rests


def resting(coid: str, qty: int = 10) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL",
        side="buy",
        qty=Decimal(qty),
        type="limit",
        limit_price=LIMIT,
        time_in_force="gtc",
        client_order_id=coid,
    )


async def status_of(log: UpdateLog, coid: str, *statuses: str) -> Order:
    update = await log.wait_for(
        lambda u: u.order.client_order_id == coid and u.order.status in statuses
    )
    return update.order


async def test_a_replace_racing_a_fill_already_at_tws_is_refused_as_filled(
    sim: TwsSimulator,
) -> None:
    async with streaming_connector(sim) as (connector, log):
        with trio.fail_after(BOUND):
            old = await connector.submit(resting("race-1"))
            refusals: list[Exception] = []

            async def replace() -> None:
                change = ReplaceRequest(
                    order_id=old.id, limit_price=LIMIT - 1, client_order_id="race-1b"
                )
                try:
                    await connector.replace(old, change)
                except NotReplaceable as exc:
                    refusals.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(replace)
                # TWS fills it now, before it reads the modify (its news still on the way).
                await sim.execute(connector.settings.client_id, int(old.id), old.qty)
            filled = await status_of(log, "race-1", "filled")
    assert [str(e) for e in refusals] == [
        f"order ib:{old.id} (client order id race-1) is filled, 10 filled;"
        " it cannot be replaced (it is final)"
    ]
    assert filled.filled_qty == old.qty
    assert {o.order.order_ref for o in sim.exchange.orders.values()} == {"race-1"}


async def test_a_replace_whose_answer_was_lost_is_found_by_its_new_client_order_id(
    sim: TwsSimulator,
) -> None:
    async with streaming_connector(sim) as (connector, _):
        with trio.fail_after(BOUND):
            old = await connector.submit(resting("lost-1"))
            sim.faults.drop_on_order = 1  # TWS takes the modify, the socket dies unanswered
            change = ReplaceRequest(order_id=old.id, qty=Decimal(12), client_order_id="lost-1b")
            with pytest.raises(BrokerUnavailable):
                await connector.replace(old, change)
    await sim.wait_for_session(1, present=False)
    async with streaming_connector(sim) as (again, _):  # the broker actor's next incarnation
        with trio.fail_after(BOUND):
            found = await again.get_order_by_client_id("lost-1b")
            retried = await again.replace(old, change)  # looked up, not sent twice
    assert (found.id, found.qty, found.status) == (old.id, Decimal(12), "accepted")
    assert (retried.client_order_id, retried.replaces) == ("lost-1b", "lost-1")
    (at_tws,) = sim.exchange.orders.values()
    assert (at_tws.order.order_ref, at_tws.order.total_quantity) == ("lost-1b", Decimal(12))


async def test_a_retried_replace_on_a_live_connection_is_applied_once(
    sim: TwsSimulator,
) -> None:
    async with streaming_connector(sim) as (connector, log):
        with trio.fail_after(BOUND):
            old = await connector.submit(resting("twice-1"))
            change = ReplaceRequest(order_id=old.id, qty=Decimal(11), client_order_id="twice-1b")
            first = await connector.replace(old, change)
            second = await connector.replace(old, change)
            await status_of(log, "twice-1", "replaced")
    assert first == second
    assert [u.order.status for u in log.for_client_id("twice-1")].count("replaced") == 1
    assert (first.qty, first.replaces) == (Decimal(11), "twice-1")


async def bracket(connector: IbConnector, name: str, entry: OrderRequest) -> list[Order]:
    price = Decimal(100)
    exits = [
        OrderRequest(
            symbol="AAPL",
            side="sell",
            qty=entry.qty,
            type="limit",
            limit_price=price * 100,
            time_in_force="gtc",
            client_order_id=f"{name}-tp",
        ),
        OrderRequest(
            symbol="AAPL",
            side="sell",
            qty=entry.qty,
            type="stop",
            stop_price=Decimal(1),
            time_in_force="gtc",
            client_order_id=f"{name}-sl",
        ),
    ]
    return await connector.submit_list(
        OrderListRequest(contingency="bracket", list_id=name, legs=[entry, *exits])
    )


async def test_a_bracket_waits_held_and_its_canceled_entry_cancels_the_exits(
    sim: TwsSimulator,
) -> None:
    async with streaming_connector(sim) as (connector, log):
        with trio.fail_after(BOUND):
            legs = await bracket(connector, "bx", resting("bx-in"))
            await connector.cancel(legs[0].id)
            for coid in ("bx-tp", "bx-sl"):
                await status_of(log, coid, "canceled")
    assert [o.status for o in legs] == ["accepted", "held", "held"]
    assert {o.leg.list_id for o in legs if o.leg} == {"bx"}
    entry_leg, tp_leg = legs[0].leg, legs[1].leg
    assert entry_leg is not None and entry_leg.children == ("bx-tp", "bx-sl")
    assert tp_leg is not None and (tp_leg.parent_id, tp_leg.peer_id) == ("bx-in", "bx-sl")
    assert [o.order.parent_id for o in sim.exchange.orders.values()] == [0, *[int(legs[0].id)] * 2]


async def test_a_bracket_exit_modified_in_place_stays_a_leg_of_its_list(
    sim: TwsSimulator,
) -> None:
    async with streaming_connector(sim) as (connector, log):
        with trio.fail_after(BOUND):
            entry = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(5), client_order_id="bm-in")
            legs = await bracket(connector, "bm", entry)
            await status_of(log, "bm-in", "filled")
            stop = await status_of(log, "bm-sl", "accepted")
            change = ReplaceRequest(
                order_id=stop.id, stop_price=Decimal(2), client_order_id="bm-sl2"
            )
            moved = await connector.replace(stop, change)
            await sim.set_price("AAPL", Decimal("1.50"))  # through the new stop
            await status_of(log, "bm-sl2", "filled")
            await status_of(log, "bm-tp", "canceled")
    assert moved.id == legs[2].id  # TWS kept its order id
    assert moved.leg == legs[2].leg and moved.stop_price == Decimal(2)


async def test_after_a_restart_a_bracket_exit_waiting_at_tws_is_still_held(
    sim: TwsSimulator,
) -> None:
    async with streaming_connector(sim) as (connector, _):
        with trio.fail_after(BOUND):
            await bracket(connector, "br", resting("br-in"))
    await sim.wait_for_session(1, present=False)
    async with streaming_connector(sim) as (fresh, _):  # knows nothing of the list
        with trio.fail_after(BOUND):
            exits = [await fresh.get_order_by_client_id(c) for c in ("br-tp", "br-sl")]
            entry = await fresh.get_order_by_client_id("br-in")
    assert [o.status for o in exits] == ["held", "held"]
    assert entry.status == "accepted"


async def test_a_replaced_bracket_entry_keeps_its_exits_held_until_it_fills(
    sim: TwsSimulator,
) -> None:
    async with streaming_connector(sim) as (connector, log):
        with trio.fail_after(BOUND):
            entry, *_ = await bracket(connector, "re", resting("re-in"))
            change = ReplaceRequest(order_id=entry.id, qty=Decimal(12), client_order_id="re-in2")
            moved = await connector.replace(entry, change)
            assert [
                (await connector.get_order_by_client_id(c)).status for c in ("re-tp", "re-sl")
            ] == [
                "held",
                "held",
            ]
            await sim.execute(connector.settings.client_id, int(moved.id), Decimal(12))
            await status_of(log, "re-in2", "filled")
            take_profit = await status_of(log, "re-tp", "accepted")
    assert take_profit.leg is not None and take_profit.leg.role == "take_profit"
    assert (moved.qty, moved.replaces) == (Decimal(12), "re-in")


async def test_a_second_replace_while_one_is_unanswered_is_refused(sim: TwsSimulator) -> None:
    async with streaming_connector(sim) as (connector, _):
        with trio.fail_after(BOUND):
            old = await connector.submit(resting("two-1"))
            sim.faults.ack_gate = trio.Event()  # TWS sits on the first modify
            async with trio.open_nursery() as nursery:
                first = ReplaceRequest(order_id=old.id, qty=Decimal(11), client_order_id="two-1b")
                nursery.start_soon(connector.replace, old, first)
                await sim.at_gate.wait()
                second = ReplaceRequest(order_id=old.id, qty=Decimal(9), client_order_id="two-1c")
                with pytest.raises(NotReplaceable, match="another replace of it is pending"):
                    await connector.replace(old, second)
                nursery.cancel_scope.cancel()


async def test_a_replace_retried_after_a_timeout_is_sent_again_and_applied_once(
    sim: TwsSimulator,
) -> None:
    async with streaming_connector(sim, ack_timeout_s=0.5) as (connector, log):
        with trio.fail_after(BOUND):
            old = await connector.submit(resting("late-1"))
            sim.faults.ack_gate = gate = trio.Event()  # TWS sits on the modify
            change = ReplaceRequest(order_id=old.id, qty=Decimal(11), client_order_id="late-1b")
            with pytest.raises(BrokerUnavailable, match="look it up"):
                await connector.replace(old, change)
            async with trio.open_nursery() as nursery:
                retried: list[Order] = []

                async def retry() -> None:
                    retried.append(await connector.replace(old, change))

                nursery.start_soon(retry)
                await trio.testing.wait_all_tasks_blocked()  # sent again, waiting
                gate.set()  # TWS reads both modifies now
            await status_of(log, "late-1", "replaced")
    assert (retried[0].client_order_id, retried[0].qty) == ("late-1b", Decimal(11))
    assert [u.order.status for u in log.for_client_id("late-1")].count("replaced") == 1
    (at_tws,) = sim.exchange.orders.values()
    assert (at_tws.order.order_ref, at_tws.order.total_quantity) == ("late-1b", Decimal(11))


async def test_after_a_restart_a_replaced_order_works_for_what_was_left_and_keeps_counting(
    sim: TwsSimulator,
) -> None:
    async with streaming_connector(sim) as (connector, log):
        with trio.fail_after(BOUND):
            old = await connector.submit(resting("rs-1", 20))
            await sim.execute(connector.settings.client_id, int(old.id), Decimal(5))
            await status_of(log, "rs-1", "partially_filled")
            change = ReplaceRequest(order_id=old.id, limit_price=LIMIT - 1, client_order_id="rs-2")
            await connector.replace(old, change)
    await sim.wait_for_session(1, present=False)
    async with streaming_connector(sim) as (fresh, log):  # knows nothing of the replace
        with trio.fail_after(BOUND):
            found = await fresh.get_order_by_client_id("rs-2")
            await sim.execute(fresh.settings.client_id, int(old.id), Decimal(15))
            done = await status_of(log, "rs-2", "filled")
    assert (found.qty, found.filled_qty, found.status) == (Decimal(15), 0, "accepted")
    assert (done.qty, done.filled_qty) == (Decimal(15), Decimal(15))
    assert [u.fill.qty for u in log.for_client_id("rs-2") if u.fill] == [Decimal(15)]


async def test_lists_sent_beside_concurrent_submits_keep_their_ids_in_order(
    sim: TwsSimulator,
) -> None:
    """TWS refuses an order id below one it has seen: a list's ids and a neighbour's
    submit, taken at once, must go out in the order they were taken."""
    async with streaming_connector(sim) as (connector, _log):
        answers: dict[str, list[Order]] = {}

        async def bracket(n: int) -> None:
            coids = [f"cb-{n}-e", f"cb-{n}-t", f"cb-{n}-s"]
            legs = [
                resting(coids[0]),
                OrderRequest(symbol="AAPL", side="sell", qty=Decimal(10), type="limit",
                             limit_price=Decimal(900), time_in_force="gtc",
                             client_order_id=coids[1]),
                OrderRequest(symbol="AAPL", side="sell", qty=Decimal(10), type="stop",
                             stop_price=Decimal(2), time_in_force="gtc",
                             client_order_id=coids[2]),
            ]  # fmt: skip
            answers[coids[0]] = await connector.submit_list(
                OrderListRequest(contingency="bracket", legs=legs, list_id=f"cb-{n}")
            )

        async def single(n: int) -> None:
            answers[f"cs-{n}"] = [await connector.submit(resting(f"cs-{n}"))]

        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                for n in range(6):
                    nursery.start_soon(bracket, n)
                    nursery.start_soon(single, n)
        statuses = {o.client_order_id: o.status for legs in answers.values() for o in legs}
        assert len(statuses) == 6 * 3 + 6
        assert set(statuses.values()) <= {"accepted", "held"}, statuses


async def test_an_oco_leg_arriving_after_its_peer_filled_is_canceled(sim: TwsSimulator) -> None:
    """The first exit fills as it is placed; the second joins a group that is done."""
    async with streaming_connector(sim) as (connector, log):
        tif = "gtc"
        legs = [
            OrderRequest(symbol="AAPL", side="sell", qty=Decimal(10), type="limit",
                         limit_price=Decimal(5), time_in_force=tif, client_order_id="late-t"),
            OrderRequest(symbol="AAPL", side="sell", qty=Decimal(10), type="stop",
                         stop_price=Decimal(2), time_in_force=tif, client_order_id="late-s"),
        ]  # fmt: skip
        with trio.fail_after(BOUND):
            await connector.submit_list(
                OrderListRequest(contingency="oco", legs=legs, list_id="late")
            )
            await status_of(log, "late-t", "filled")
            await status_of(log, "late-s", "canceled")
