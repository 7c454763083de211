"""Modifications, brackets and OCA groups at the TWS simulator, seen through IB's own client.

Each test drives the simulator with ``ibapi`` as a trader would drive TWS
and checks what that trader would see: the callbacks of the order ids
involved. Prices move only when a test moves them (no market ticks), so
every fill is forced and every run is the same.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import trio

from tests.brokers.ib.harness import BOUND, RawClient
from tests.sim.ib.official import Recorder, against_the_simulator, order, set_price, stock
from ult_actors.brokers.ib import wire
from ult_actors.sim.ib import TwsSimulator, run_command

AAPL = stock("AAPL")
Calls = dict[str, list[tuple[Any, ...]]]


def statuses(calls: Calls, order_id: int) -> list[str]:
    """The statuses an order went through, each change once."""
    seen: list[str] = []
    for oid, status, *_ in calls["orderStatus"]:
        if oid == order_id and (not seen or seen[-1] != status):
            seen.append(status)
    return seen


def errors(calls: Calls) -> list[tuple[int, int]]:
    """(order id, code) of every error that is not a notice or a cancel's confirmation."""
    return [(req, code) for req, code, _ in calls["error"] if code < 2100 and code != 202]


def last_order(calls: Calls, order_id: int) -> Any:
    """The order as TWS last described it (``openOrder``)."""
    return [o for oid, o, _ in calls["order"] if oid == order_id][-1]


def first_id(calls: Calls) -> int:
    return int(calls["nextValidId"][0][0])


def until_status(app: Recorder, order_id: int, status: str, filled: float | None = None) -> None:
    app.wait_for(
        "orderStatus",
        lambda a: a[0] == order_id and a[1] == status and (filled is None or a[2] == filled),
    )


def resting_buy(sim: TwsSimulator) -> float:
    """A buy limit price well below AAPL's price: it rests until a test moves the price."""
    return float(sim.exchange.price("AAPL") - 20)


# -- modify: placeOrder again with the same id ----------------------------------


async def test_a_modify_changes_price_quantity_and_tif_in_place(sim: TwsSimulator) -> None:
    low = resting_buy(sim)

    def session(app: Recorder) -> None:
        (oid,) = app.wait_for("nextValidId")
        app.placeOrder(oid, AAPL, order("BUY", 10, "LMT", "mod-1", limit=low))
        until_status(app, oid, "Submitted")
        app.placeOrder(oid, AAPL, order("BUY", 12, "LMT", "mod-1", limit=low + 0.5, tif="GTC"))
        app.wait_for("orderStatus", lambda a: a[0] == oid and a[3] == 12)
        app.round_trip()

    calls = await against_the_simulator(21, session, sim)
    oid = first_id(calls)
    now = last_order(calls, oid)
    assert (now.totalQuantity, now.lmtPrice, now.tif) == (12, pytest.approx(low + 0.5), "GTC")
    assert {o for o, *_ in calls["openOrder"]} == {oid}  # the same order, no second one
    assert len(sim.exchange.orders) == 1
    assert errors(calls) == []


async def test_changing_side_or_type_is_refused_with_105_and_the_order_stays(
    sim: TwsSimulator,
) -> None:
    low = resting_buy(sim)

    def session(app: Recorder) -> None:
        (oid,) = app.wait_for("nextValidId")
        app.placeOrder(oid, AAPL, order("BUY", 10, "LMT", "mod-2", limit=low))
        until_status(app, oid, "Submitted")
        app.placeOrder(oid, AAPL, order("SELL", 10, "LMT", "mod-2", limit=low))
        app.placeOrder(oid, AAPL, order("BUY", 10, "MKT", "mod-2"))
        app.round_trip()

    calls = await against_the_simulator(22, session, sim)
    oid = first_id(calls)
    assert errors(calls) == [(oid, 105), (oid, 105)]
    kept = last_order(calls, oid)
    assert (kept.action, kept.orderType, kept.totalQuantity) == ("BUY", "LMT", 10)
    assert statuses(calls, oid) == ["Submitted"]


async def test_a_modify_that_loses_the_race_with_a_fill_is_refused_with_104(
    sim: TwsSimulator,
) -> None:
    low = resting_buy(sim)

    def session(app: Recorder) -> None:
        (oid,) = app.wait_for("nextValidId")
        app.placeOrder(oid, AAPL, order("BUY", 10, "LMT", "race", limit=low))
        until_status(app, oid, "Submitted")
        set_price(sim, "AAPL", low - 1)  # the market reaches it first
        until_status(app, oid, "Filled")
        app.placeOrder(oid, AAPL, order("BUY", 10, "LMT", "race", limit=low - 5))
        app.wait_for("error", lambda a: a[0] == oid)
        app.reqCompletedOrders(False)
        app.wait_for("completedOrdersEnd")

    calls = await against_the_simulator(23, session, sim)
    oid = first_id(calls)
    assert errors(calls) == [(oid, 104)]
    assert statuses(calls, oid) == ["Submitted", "Filled"]
    assert ("race", "Filled") in calls["completedOrder"]
    assert sum(shares for _, o, shares, _ in calls["execDetails"] if o == oid) == 10


async def test_a_partial_fill_is_kept_through_a_modify(sim: TwsSimulator) -> None:
    low = resting_buy(sim)
    sim.exchange.max_fill_qty = Decimal(4)  # a thin book: 4 shares an execution

    def session(app: Recorder) -> None:
        (oid,) = app.wait_for("nextValidId")
        app.placeOrder(oid, AAPL, order("BUY", 10, "LMT", "part", limit=low))
        until_status(app, oid, "Submitted")
        set_price(sim, "AAPL", low - 1)
        until_status(app, oid, "Submitted", filled=4)
        set_price(sim, "AAPL", low + 20)  # away again: nothing more fills
        app.placeOrder(oid, AAPL, order("BUY", 8, "LMT", "part", limit=low - 2))
        app.wait_for("orderStatus", lambda a: a[0] == oid and a[3] == 4)
        sim.exchange.max_fill_qty = None
        set_price(sim, "AAPL", low - 3)
        until_status(app, oid, "Filled")

    calls = await against_the_simulator(24, session, sim)
    oid = first_id(calls)
    after_modify = next(a for a in calls["orderStatus"] if a[0] == oid and a[3] == 4)
    assert after_modify[1:4] == ("Submitted", 4, 4)  # filled 4 of 8: 4 left
    assert [a[2] for a in calls["orderStatus"] if a[0] == oid][-1] == 8
    assert [shares for _, o, shares, _ in calls["execDetails"] if o == oid] == [4, 4]
    assert last_order(calls, oid).totalQuantity == 8
    assert errors(calls) == []


# -- brackets: parentId and transmit -----------------------------------------------


def place_bracket(app: Recorder, entry: float, ref: str) -> int:
    """Entry, take-profit and stop-loss as IB's bracket sample sends them; the entry's id."""
    (pid,) = app.wait_for("nextValidId")
    app.placeOrder(pid, AAPL, order("BUY", 10, "LMT", f"{ref}-in", limit=entry, transmit=False))
    app.placeOrder(
        pid + 1,
        AAPL,
        order("SELL", 10, "LMT", f"{ref}-tp", limit=entry + 10, parentId=pid, transmit=False),
    )
    app.round_trip()
    assert [o for o, *_ in app.calls["openOrder"] if o >= pid] == []  # not sent yet
    app.placeOrder(
        pid + 2,
        AAPL,
        order("SELL", 10, "STP", f"{ref}-sl", auxPrice=entry - 10, parentId=pid, transmit=True),
    )
    until_status(app, pid + 2, "PreSubmitted")
    return int(pid)


async def test_a_bracket_goes_out_whole_and_its_filled_entry_releases_the_exits(
    sim: TwsSimulator,
) -> None:
    entry = resting_buy(sim)

    def session(app: Recorder) -> None:
        pid = place_bracket(app, entry, "br")
        set_price(sim, "AAPL", entry - 1)
        until_status(app, pid, "Filled")
        until_status(app, pid + 1, "Submitted")

    calls = await against_the_simulator(25, session, sim)
    pid = first_id(calls)
    assert statuses(calls, pid) == ["Submitted", "Filled"]
    assert statuses(calls, pid + 1) == ["PreSubmitted", "Submitted"]  # working now
    assert statuses(calls, pid + 2) == ["PreSubmitted"]  # a stop: waits for its trigger
    assert {a[4] for a in calls["orderStatus"] if a[0] in (pid + 1, pid + 2)} == {pid}
    assert errors(calls) == []
    listed = json.loads((await run_command(sim, "orders")).removeprefix("ok "))
    assert [(o["order_ref"], o["parent_id"], o["filled"]) for o in listed] == [
        ("br-in", 0, "10"),
        ("br-tp", pid, "0"),
        ("br-sl", pid, "0"),
    ]  # what a chaos run checks linked orders by


async def test_a_bracket_stop_that_triggers_cancels_the_take_profit(sim: TwsSimulator) -> None:
    entry = resting_buy(sim)

    def session(app: Recorder) -> None:
        pid = place_bracket(app, entry, "sl")
        set_price(sim, "AAPL", entry - 1)
        until_status(app, pid + 1, "Submitted")
        set_price(sim, "AAPL", entry - 12)  # through the stop
        until_status(app, pid + 2, "Filled")
        until_status(app, pid + 1, "Cancelled")

    calls = await against_the_simulator(26, session, sim)
    pid = first_id(calls)
    assert statuses(calls, pid + 2) == ["PreSubmitted", "Submitted", "Filled"]
    assert statuses(calls, pid + 1) == ["PreSubmitted", "Submitted", "Cancelled"]
    assert [(o, shares) for _, o, shares, _ in calls["execDetails"]] == [(pid, 10), (pid + 2, 10)]
    assert sim.exchange.holdings["AAPL"].qty == 0  # in and out: flat


async def test_canceling_a_bracket_entry_cancels_its_exits(sim: TwsSimulator) -> None:
    entry = resting_buy(sim)

    def session(app: Recorder) -> None:
        pid = place_bracket(app, entry, "cx")
        app.cancelOrder(pid)
        for oid in (pid, pid + 1, pid + 2):
            until_status(app, oid, "Cancelled")

    calls = await against_the_simulator(27, session, sim)
    pid = first_id(calls)
    assert [statuses(calls, o)[-1] for o in (pid, pid + 1, pid + 2)] == ["Cancelled"] * 3
    assert calls.get("execDetails", []) == []


async def test_a_child_of_an_unknown_parent_is_refused_with_135(sim: TwsSimulator) -> None:
    def session(app: Recorder) -> None:
        (oid,) = app.wait_for("nextValidId")
        app.placeOrder(oid, AAPL, order("SELL", 5, "LMT", "orphan", limit=999.0, parentId=oid + 50))
        app.wait_for("error", lambda a: a[0] == oid)

    calls = await against_the_simulator(28, session, sim)
    assert errors(calls) == [(first_id(calls), 135)]
    assert sim.exchange.orders == {}


# -- OCA groups --------------------------------------------------------------------


async def test_oca_type_1_one_fill_cancels_the_other_even_when_both_are_crossed(
    sim: TwsSimulator,
) -> None:
    low = resting_buy(sim)

    def session(app: Recorder) -> None:
        (oid,) = app.wait_for("nextValidId")
        for i, price in enumerate((low, low - 1)):
            app.placeOrder(
                oid + i,
                AAPL,
                order("BUY", 10, "LMT", f"oco-{i}", limit=price, ocaGroup="g-1", ocaType=1),
            )
            until_status(app, oid + i, "Submitted")
        set_price(sim, "AAPL", low - 5)  # both limits crossed at once
        until_status(app, oid + 1, "Cancelled")

    calls = await against_the_simulator(29, session, sim)
    oid = first_id(calls)
    assert statuses(calls, oid) == ["Submitted", "Filled"]
    assert statuses(calls, oid + 1) == ["Submitted", "Cancelled"]
    assert sum(shares for *_, shares, _ in calls["execDetails"]) == 10  # never both
    assert last_order(calls, oid + 1).ocaGroup == "g-1"


async def test_oca_type_3_a_partial_fill_reduces_the_other_and_completion_cancels_it(
    sim: TwsSimulator,
) -> None:
    low = resting_buy(sim)
    sim.exchange.max_fill_qty = Decimal(4)

    def session(app: Recorder) -> None:
        (oid,) = app.wait_for("nextValidId")
        for i, price in enumerate((low, low - 30)):
            app.placeOrder(
                oid + i,
                AAPL,
                order("BUY", 10, "LMT", f"ouo-{i}", limit=price, ocaGroup="g-3", ocaType=3),
            )
            until_status(app, oid + i, "Submitted")
        set_price(sim, "AAPL", low - 1)
        app.wait_for("orderStatus", lambda a: a[0] == oid + 1 and a[3] == 6)
        sim.exchange.max_fill_qty = None
        set_price(sim, "AAPL", low - 2)
        until_status(app, oid + 1, "Cancelled")

    calls = await against_the_simulator(30, session, sim)
    oid = first_id(calls)
    assert [o.totalQuantity for i, o, _ in calls["order"] if i == oid + 1][:2] == [10, 6]
    assert statuses(calls, oid) == ["Submitted", "Filled"]
    assert statuses(calls, oid + 1) == ["Submitted", "Cancelled"]
    assert sum(shares for *_, shares, _ in calls["execDetails"]) == 10


# -- while TWS is cut off from IB ------------------------------------------------------


async def test_a_bracket_completed_while_tws_is_cut_off_goes_out_whole_on_the_restore(
    sim: TwsSimulator,
) -> None:
    entry = Decimal(str(resting_buy(sim)))
    aapl = wire.Contract(symbol="AAPL")

    def leg(action: str, kind: str, **terms: Any) -> wire.IbOrder:
        return wire.IbOrder(action=action, total_quantity=Decimal(5), order_type=kind, **terms)

    with trio.fail_after(BOUND):
        client = await RawClient.connect(sim.port)
        await client.send(wire.StartApi(client_id=31))
        pid = (await client.until(wire.NextValidId))[-1].order_id  # type: ignore[union-attr]
        await sim.connectivity_lost()
        await client.send(
            wire.PlaceOrder(
                order_id=pid,
                contract=aapl,
                order=leg("BUY", "LMT", lmt_price=entry, transmit=False),
            )
        )
        await client.send(
            wire.PlaceOrder(
                order_id=pid + 1,
                contract=aapl,
                order=leg("SELL", "STP", aux_price=entry - 10, parent_id=pid),
            )
        )
        await client.send(wire.ReqOpenOrders())
        assert [
            m for m in await client.until(wire.OpenOrderEnd) if isinstance(m, wire.OpenOrder)
        ] == []
        await sim.connectivity_restored()
        seen: dict[int, str] = {}
        while seen.get(pid + 1) != "PreSubmitted":
            msg = await client.receive()
            if isinstance(msg, wire.OrderStatus):
                seen[msg.order_id] = msg.status
    assert seen == {pid: "Submitted", pid + 1: "PreSubmitted"}
