"""A bracket at Alpaca whose answer was lost: its exits are found again, never taken for strays.

Alpaca names a bracket's exits with client order ids of its own and tells
their ids only in the answer to the list. When that answer is lost, the
service finds the exits through the entry (by our client order id, its legs
nested) and by their role, so the journal's legs get Alpaca's ids: none is
settled as never sent, none of Alpaca's is adopted as an order nobody sent,
and the bracket goes on working under our ids, even when Alpaca reports a
leg before reconciliation has looked for it. The whole service runs on the
simulator over loopback, with its journal in a SQLite file.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import trio

from tests.brokers.alpaca.harness import running_sim, service_env
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.config import load_config
from ult_actors.journal import sqlite_store_opener
from ult_actors.messages import (
    ListOrders,
    Order,
    OrderListRequest,
    OrderRequest,
    OrdersReply,
    SubmitList,
)
from ult_actors.service import Service, build_service
from ult_actors.sim.alpaca.faults import Fault
from ult_actors.sim.alpaca.server import AlpacaSim

COIDS = ("lost-e", "lost-tp", "lost-sl")


@asynccontextmanager
async def service_on(port: int, state: Path) -> AsyncIterator[Service]:
    """The service on the simulator, its journal a SQLite file in ``state``."""
    env = service_env(port, state)
    svc = build_service(
        load_config(None, env=env),
        env=env,
        rng=random.Random(5),
        reconcile=ReconcilePolicy(settle_grace_s=0.2),
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


def bracket() -> OrderListRequest:
    def leg(coid: str, side: str, kind: str, **prices: Decimal) -> OrderRequest:
        return OrderRequest(
            symbol="AAPL", side=side, qty=Decimal(5), type=kind, time_in_force="gtc",  # type: ignore[arg-type]
            client_order_id=coid, **prices,
        )  # fmt: skip

    return OrderListRequest(
        contingency="bracket",
        list_id="lost-br",
        broker="alpaca",
        legs=[
            leg(COIDS[0], "buy", "limit", limit_price=Decimal(185)),
            leg(COIDS[1], "sell", "limit", limit_price=Decimal(200)),
            leg(COIDS[2], "sell", "stop", stop_price=Decimal(180)),
        ],
    )


async def journal(svc: Service) -> dict[str, Order]:
    reply = await svc.gateway.handle(ListOrders(id=9))
    assert isinstance(reply, OrdersReply)
    return {o.client_order_id: o for o in reply.orders}


async def until(svc: Service, want: dict[str, str]) -> dict[str, Order]:
    with trio.fail_after(15):
        while True:
            orders = await journal(svc)
            if {c: orders[c].status for c in want if c in orders} == want:
                return orders
            await trio.sleep(0.02)


def alpaca_legs(sim: AlpacaSim) -> dict[str, str]:
    """Alpaca's bracket: role -> its order id there (the entry under our id)."""
    entry = sim.venue.get_by_client_id(COIDS[0])
    legs = {"entry": entry.id}
    for leg_id in entry.leg_ids:
        leg = sim.venue.orders[leg_id]
        legs["take_profit" if leg.type == "limit" else "stop_loss"] = leg.id
    return legs


def assert_matched(orders: dict[str, Order], sim: AlpacaSim) -> None:
    """Our three legs carry Alpaca's three ids; nothing else was journaled or placed."""
    legs = alpaca_legs(sim)
    assert {c: orders[c].id for c in COIDS} == {
        COIDS[0]: legs["entry"], COIDS[1]: legs["take_profit"], COIDS[2]: legs["stop_loss"],
    }  # fmt: skip
    assert sorted(orders) == sorted(COIDS), "an order of Alpaca's making was adopted"
    assert len(sim.venue.orders) == 3


async def test_a_lost_bracket_answer_is_settled_with_alpacas_leg_ids(tmp_path: Path) -> None:
    async with running_sim(autofill=False) as (sim, port), service_on(port, tmp_path) as svc:
        sim.arm(Fault(kind="lose_reply", method="POST", path="/v2/orders"))
        with trio.fail_after(15):
            reply = await svc.gateway.handle(SubmitList(id=1, orders=bracket()))
        assert isinstance(reply, OrdersReply)
        assert [o.status for o in reply.orders] == ["accepted", "held", "held"]
        assert_matched(await journal(svc), sim)


async def test_a_bracket_whose_answer_was_lost_before_a_restart_keeps_its_legs(
    tmp_path: Path,
) -> None:
    async with running_sim(autofill=False) as (sim, port):
        # The bracket reaches Alpaca, its answer is lost, and the service stops
        # before it asks: the journal holds three legs Alpaca never named to it.
        async with service_on(port, tmp_path) as svc:
            sim.arm(Fault(kind="lose_reply", method="POST", path="/v2/orders"))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(svc.gateway.handle, SubmitList(id=1, orders=bracket()))
                with trio.fail_after(15):
                    while len(sim.venue.orders) < 3:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        left = {o.client_order_id: o.id for o in await journal_file(tmp_path)}
        assert left[COIDS[1]] == left[COIDS[2]] == ""  # (the stream may have named the entry)

        async with service_on(port, tmp_path) as svc:
            orders = await until(svc, {COIDS[0]: "accepted", COIDS[1]: "held", COIDS[2]: "held"})
            assert_matched(orders, sim)
            # The bracket works on under our ids: the entry fills, then the stop,
            # and Alpaca's cancel of the take-profit reaches our record of it.
            sim.venue.execute(alpaca_legs(sim)["entry"])
            await until(svc, {COIDS[1]: "accepted", COIDS[2]: "accepted"})
            sim.venue.execute(alpaca_legs(sim)["stop_loss"])
            orders = await until(
                svc, {COIDS[0]: "filled", COIDS[1]: "canceled", COIDS[2]: "filled"}
            )
            assert_matched(orders, sim)


async def journal_file(state: Path) -> list[Order]:
    """The legs as the stopped service left them in its journal file."""
    opener = sqlite_store_opener(state / "journal.db")
    async with opener() as store:
        return [o for c in COIDS if (o := await store.get(c)) is not None]


async def test_a_leg_reported_before_reconciliation_names_it_is_not_taken_for_a_stray(
    tmp_path: Path,
) -> None:
    async with running_sim(autofill=False) as (sim, port):
        async with service_on(port, tmp_path) as svc:
            sim.arm(Fault(kind="lose_reply", method="POST", path="/v2/orders"))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(svc.gateway.handle, SubmitList(id=1, orders=bracket()))
                with trio.fail_after(15):
                    while len(sim.venue.orders) < 3:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        # On the restart the stream is live while the first order listings are slow:
        # the entry fills then, and Alpaca reports its exits working, under its own ids,
        # before reconciliation has looked for them.
        sim.arm(Fault(kind="slow", method="GET", path="/v2/orders", delay_s=1.0, count=2))
        async with trio.open_nursery() as nursery:

            async def fill_the_entry_meanwhile() -> None:
                with trio.fail_after(15):
                    while sim.faults.fired.get("slow", 0) < 2:
                        await trio.sleep(0.01)
                sim.venue.execute(alpaca_legs(sim)["entry"])

            nursery.start_soon(fill_the_entry_meanwhile)
            async with service_on(port, tmp_path) as svc:
                orders = await until(
                    svc, {COIDS[0]: "filled", COIDS[1]: "accepted", COIDS[2]: "accepted"}
                )
                assert_matched(orders, sim)
