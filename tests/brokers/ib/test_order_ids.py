"""IB order ids across reconnects: never one id for two orders.

The story behind these tests (a chaos run): TWS lost IB, so it held an
order; the API socket then dropped, the next connection was told a
nextValidId that did not count the held order's id, and used that id again
for another order. When IB came back TWS took the second order as a
modification of the first: one id, two orders, one of them lost. TWS's rule
is that a client's new ids exceed every id it used, and a reused id is
refused with error 103.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
import trio

from tests.brokers.contract import UpdateLog
from tests.brokers.ib.harness import BOUND, RawClient, settings
from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.kind import connector_factory
from ult_actors.brokers.ib.orders import OrderTracker
from ult_actors.errors import BrokerUnavailable, InvalidOrder
from ult_actors.messages import Order, OrderRequest
from ult_actors.sim.ib import TwsSimulator


def resting(coid: str, symbol: str, qty: int) -> OrderRequest:
    """A buy limit far below the market: it rests, so it stays open at the simulator."""
    return OrderRequest(
        symbol=symbol, side="buy", qty=Decimal(qty), type="limit", limit_price=Decimal("1.00"),
        time_in_force="gtc", client_order_id=coid,
    )  # fmt: skip


def ib_limit(symbol: str, qty: int = 5, action: str = "BUY") -> tuple[wire.Contract, wire.IbOrder]:
    contract = wire.Contract(symbol=symbol)
    order = wire.IbOrder(
        action=action, total_quantity=Decimal(qty), order_type="LMT", lmt_price=Decimal("1.00"),
        tif="GTC",
    )  # fmt: skip
    return contract, order


async def stream(connector: IbConnector, log: UpdateLog, done: trio.Event) -> None:
    try:
        await connector.stream_updates(log.sink)
    except BrokerUnavailable:
        pass  # the socket dropped: what these tests do on purpose
    finally:
        done.set()


async def submit_held(connector: IbConnector, request: OrderRequest) -> None:
    """Submit to a TWS that holds orders: accepted as PendingSubmit, not yet at IB."""
    placed = await connector.submit(request)
    assert placed.status == "pending_new"


async def order_errors(client: RawClient) -> list[tuple[int, int]]:
    """(order id, code) of the errors TWS sent before answering a barrier request."""
    await client.send(wire.ReqCurrentTime())
    return [
        (m.req_id, m.code)
        for m in await client.until(wire.CurrentTime)
        if isinstance(m, wire.ErrorMessage) and m.req_id > 0
    ]


def sim_orders(sim: TwsSimulator, client_id: int = 1) -> dict[int, tuple[str, str, Decimal]]:
    """The simulator's orders of one client: id -> (order ref, symbol, quantity)."""
    return {
        o.order_id: (o.order.order_ref, o.contract.symbol, o.order.total_quantity)
        for o in sim.exchange.orders.values()
        if o.client_id == client_id
    }


# -- the simulator: ids as TWS counts them ---------------------------------------


async def test_an_order_held_when_its_client_dropped_still_counts_for_next_valid_id(
    sim: TwsSimulator,
) -> None:
    aapl, buy_aapl = ib_limit("AAPL", 12)
    msft, buy_msft = ib_limit("MSFT", 7)
    with trio.fail_after(BOUND):
        first = await RawClient.connect(sim.port)
        await first.send(wire.StartApi(client_id=1))
        told = await first.until(wire.NextValidId)
        held_id = told[-1].order_id  # type: ignore[union-attr]
        await sim.connectivity_lost()
        await first.send(wire.PlaceOrder(order_id=held_id, contract=aapl, order=buy_aapl))
        await first.send(wire.ReqCurrentTime())
        await first.until(wire.CurrentTime)  # TWS has read (and held) the order
        await first.stream.aclose()
        await sim.wait_for_session(1, present=False)

        second = await RawClient.connect(sim.port)
        await second.send(wire.StartApi(client_id=1))
        told = await second.until(wire.NextValidId)
        next_id = told[-1].order_id  # type: ignore[union-attr]
        assert next_id > held_id

        # The held order's id for another order: refused (105, it does not match
        # the order it would modify) once TWS gets to it, never applied to it.
        await second.send(wire.PlaceOrder(order_id=held_id, contract=msft, order=buy_msft))
        await second.send(wire.PlaceOrder(order_id=next_id, contract=msft, order=buy_msft))
        await sim.connectivity_restored()
        assert await order_errors(second) == [(held_id, 105)]
        await second.stream.aclose()
    assert sim_orders(sim) == {held_id: ("", "AAPL", 12), next_id: ("", "MSFT", 7)}


async def test_the_simulator_refuses_a_reused_or_lower_order_id_with_103(
    sim: TwsSimulator,
) -> None:
    aapl, buy_aapl = ib_limit("AAPL", 3)
    msft, buy_msft = ib_limit("MSFT", 4)
    codes: list[tuple[int, int]] = []
    with trio.fail_after(BOUND):
        client = await RawClient.connect(sim.port)
        await client.send(wire.StartApi(client_id=4))
        told = await client.until(wire.NextValidId)
        first = told[-1].order_id  # type: ignore[union-attr]
        await client.send(wire.PlaceOrder(order_id=first + 5, contract=aapl, order=buy_aapl))
        for order_id, contract, order in [
            (first + 2, aapl, buy_aapl),  # below the highest id used: never valid again
            (first + 5, msft, buy_msft),  # a live order's id for another order
        ]:
            await client.send(wire.PlaceOrder(order_id=order_id, contract=contract, order=order))
            codes += await order_errors(client)
        await client.send(wire.CancelOrder(order_id=first + 5))
        await client.send(wire.PlaceOrder(order_id=first + 5, contract=aapl, order=buy_aapl))
        codes += [e for e in await order_errors(client) if e[1] != 202]  # 202: the cancel
        await client.stream.aclose()
    assert codes == [(first + 2, 103), (first + 5, 105), (first + 5, 103)]
    assert sim_orders(sim, 4) == {first + 5: ("", "AAPL", 3)}  # untouched by the refusals


# -- the connector: ids only ever grow --------------------------------------------


async def test_an_order_in_flight_when_the_socket_drops_keeps_its_id_after_the_reconnect(
    sim: TwsSimulator,
) -> None:
    """The chaos run's story, end to end: held order, drop, reconnect, another order."""
    make = connector_factory("ib", settings(sim.port))
    async with trio.open_nursery() as nursery:
        first = make()
        with trio.fail_after(BOUND):
            await first.connect()
            dropped = trio.Event()
            nursery.start_soon(stream, first, UpdateLog(), dropped)
            # TWS has just lost IB: it holds orders, and its 1100 is not out yet.
            sim.connected_to_ib = False
            await submit_held(first, resting("held-aapl", "AAPL", 12))
            await sim.drop_connections()
            await dropped.wait()
            await first.disconnect()

        second = make()
        log = UpdateLog()
        with trio.fail_after(BOUND):
            await second.connect()
            nursery.start_soon(stream, second, log, trio.Event())
            await submit_held(second, resting("next-msft", "MSFT", 7))
            await sim.connectivity_restored()
            await log.wait_for(lambda u: u.order.client_order_id == "next-msft")
            aapl = await second.get_order_by_client_id("held-aapl")
            msft = await second.get_order_by_client_id("next-msft")
            await second.disconnect()
        nursery.cancel_scope.cancel()
    assert int(msft.id) > int(aapl.id)
    assert (aapl.symbol, aapl.qty, msft.symbol, msft.qty) == ("AAPL", 12, "MSFT", 7)
    assert sim_orders(sim) == {
        int(aapl.id): ("held-aapl", "AAPL", 12),
        int(msft.id): ("next-msft", "MSFT", 7),
    }


async def test_ids_keep_growing_across_incarnations_when_next_valid_id_lags(
    sim: TwsSimulator,
) -> None:
    """A rejected order leaves no open order or execution to learn its id from."""
    sim.faults.stale_next_valid_id = 1
    make = connector_factory("ib", settings(sim.port))
    ids: list[int] = []
    for incarnation in range(3):
        connector = make()
        with trio.fail_after(BOUND):
            await connector.connect()
            sim.faults.reject_next = 1
            with pytest.raises(InvalidOrder, match="Simulated rejection"):
                await connector.submit(resting(f"rejected-{incarnation}", "AAPL", 1))
            placed = await connector.submit(resting(f"placed-{incarnation}", "MSFT", 1))
            rejected = await connector.get_order_by_client_id(f"rejected-{incarnation}")
            ids += [int(rejected.id), int(placed.id)]
            await connector.disconnect()
            await sim.wait_for_session(1, present=False)
    assert ids == sorted(set(ids))  # strictly increasing: no id handed out twice
    assert {v[0] for v in sim_orders(sim).values()} == {f"placed-{i}" for i in range(3)}


async def test_a_fresh_process_skips_ids_of_open_orders_tws_reports(sim: TwsSimulator) -> None:
    """No shared state (a restarted service), TWS's nextValidId lagging: open orders tell."""
    sim.faults.stale_next_valid_id = 1
    placed: list[Order] = []
    for n in range(2):
        connector = IbConnector("ib", settings(sim.port))  # no sequence shared
        with trio.fail_after(BOUND):
            await connector.connect()
            placed.append(await connector.submit(resting(f"open-{n}", "AAPL", n + 1)))
            await connector.disconnect()
            await sim.wait_for_session(1, present=False)
    assert int(placed[1].id) > int(placed[0].id)
    assert sorted(v[0] for v in sim_orders(sim).values()) == ["open-0", "open-1"]


async def test_an_id_tws_refuses_as_used_is_never_placed_and_the_retry_gets_a_fresh_one(
    sim: TwsSimulator,
) -> None:
    """Nothing tells a fresh process about a rejected order's id; TWS's 103 does."""
    sim.faults.stale_next_valid_id = 1
    first = IbConnector("ib", settings(sim.port))
    with trio.fail_after(BOUND):
        await first.connect()
        sim.faults.reject_next = 1
        with pytest.raises(InvalidOrder):
            await first.submit(resting("rejected", "AAPL", 1))
        await first.disconnect()
        await sim.wait_for_session(1, present=False)

    second = IbConnector("ib", settings(sim.port))  # a restarted service: no shared sequence
    request = resting("retried", "MSFT", 2)
    with trio.fail_after(BOUND):
        await second.connect()
        with pytest.raises(BrokerUnavailable, match="103"):
            await second.submit(request)
        placed = await second.submit(request)  # the actor's retry: same client order id
        await second.disconnect()
    assert int(placed.id) == 2
    assert sim_orders(sim) == {2: ("retried", "MSFT", 2)}


# -- the tracker: one IB order id, one order ---------------------------------------


def test_the_tracker_never_files_two_orders_under_one_ib_order_id() -> None:
    book = OrderTracker("ib", client_id=1, now_ns=lambda: 1)
    contract, ib_order = ib_limit("AAPL")
    mine = book.track_from_ib(7, contract, tagged(ib_order, "mine", 100), "Submitted")
    assert mine is not None
    with pytest.raises(ValueError, match="already tracked"):
        book.add(7, mine.order)

    # A completed order of an earlier TWS session whose executions name the same id.
    other_contract, other_order = ib_limit("MSFT")
    other = tagged(other_order, "other", 200)
    execution = wire.ExecDetails(
        req_id=1, order_id=7, contract=other_contract, exec_id="e1", time="", account="",
        exchange="", side="BOT", shares=Decimal(5), price=Decimal(1), perm_id=200,
        client_id=1, cum_qty=Decimal(5),
    )  # fmt: skip
    book.on_execution(execution)
    adopted = book.adopt_completed(
        wire.CompletedOrder(contract=other_contract, order=other, status="Filled")
    )
    assert adopted is not None
    mine_now, other_now = book.by_client_id("mine"), book.by_client_id("other")
    assert mine_now is not None and other_now is not None
    assert (mine_now.order.symbol, other_now.order.symbol) == ("AAPL", "MSFT")
    assert book.orders[7] is mine_now and other_now.order_id != 7


def tagged(order: wire.IbOrder, ref: str, perm_id: int) -> wire.IbOrder:
    """An order of client 1 as TWS reports it: order ref and perm id set."""
    return msgspec.structs.replace(order, order_ref=ref, perm_id=perm_id, client_id=1)
