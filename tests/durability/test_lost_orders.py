"""An order the broker lost (its simulator restarted with a fresh book) ends ``lost``, once.

Each broker's real loopback simulator is stopped and a fresh one (no
orders) started on the same port while the service holds a resting order
there. Reconciliation asks the broker twice (a failed lookup never counts as
"not there") and then settles the order as ``lost`` with the reason: journaled,
published once, counted in the summary; ``ult cancel`` of it says so.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.brokers.alpaca import harness as alpaca_harness
from tests.brokers.ib import harness as ib_harness
from tests.brokers.oanda import harness as oanda_harness
from tests.durability.harness import OpenOrderCalls, at_venue, config, order, running
from tests.fakes import FakeConnector, FakeVenue
from tests.ipc.harness import settings_for as ipc_settings
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.registry import broker_kind
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import NotFound
from ult_actors.ipc.server import serve_ipc
from ult_actors.journal.sqlite import open_sqlite_store
from ult_actors.messages import (
    Cancel,
    Event,
    OrderReply,
    OrderRequest,
    OrderUpdate,
    Submit,
)
from ult_actors.service import build_service
from ult_actors.sim.alpaca.server import make_alpaca_sim, serve_alpaca_sim
from ult_actors.sim.ib import TwsSimulator
from ult_actors.sim.oanda.server import OandaSimulator
from ult_actors.testing.process import ult_command

POLICY = ReconcilePolicy(settle_grace_s=0.2, stuck_after_s=0.5, interval_s=0.05, sweep_every=2)


@dataclass
class Venue:
    """How to run one broker's simulator afresh on a port, and what rests there."""

    kind: str
    serve: Callable[[int], Callable[..., Awaitable[Any]]]  # port -> task for nursery.start
    settings: Callable[[int], Any]
    resting: OrderRequest


def _ib_serve(port: int) -> Callable[..., Awaitable[Any]]:
    return partial(TwsSimulator(tick_interval_s=None).serve, "127.0.0.1", port)


def _alpaca_serve(port: int) -> Callable[..., Awaitable[Any]]:
    sim = make_alpaca_sim(key=alpaca_harness.KEY, secret=alpaca_harness.SECRET, seed=7)
    return partial(serve_alpaca_sim, sim, port=port)


def _oanda_serve(port: int) -> Callable[..., Awaitable[Any]]:
    sim = OandaSimulator(
        token=oanda_harness.TOKEN, account_id=oanda_harness.ACCOUNT, seed=7, tick_s=0
    )
    return partial(sim.serve, port)


def _oanda_settings(port: int) -> Any:
    return oanda_harness.OandaSettings(
        token=oanda_harness.Secret(oanda_harness.TOKEN),
        account_id=oanda_harness.ACCOUNT,
        base_url=f"http://127.0.0.1:{port}",
        connect_timeout_s=5.0,
        read_timeout_s=5.0,
        new_connections_per_s=1000.0,  # no connection limit at the simulator: no pace
    )


def _limit(symbol: str, qty: int, price: str) -> OrderRequest:
    return OrderRequest(
        symbol=symbol, side="buy", qty=Decimal(qty), type="limit", limit_price=Decimal(price),
        time_in_force="gtc", client_order_id="rest-1",
    )  # fmt: skip


VENUES = {
    "ib": Venue("ib", _ib_serve, ib_harness.settings, _limit("AAPL", 10, "1.00")),
    "alpaca": Venue(
        "alpaca", _alpaca_serve, alpaca_harness.settings_for, _limit("AAPL", 10, "1.00")
    ),
    "oanda": Venue("oanda", _oanda_serve, _oanda_settings, _limit("EUR_USD", 1000, "1.00000")),
}


def _config(tmp: Path, venue: Venue, port: int) -> ServiceConfig:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker=venue.kind, state_dir=str(tmp)),
        brokers=[
            BrokerEntry(
                name=venue.kind, kind=venue.kind, enabled=True, settings=venue.settings(port)
            )
        ],
    )
    cfg.supervision.backoff_initial_ms = 20
    cfg.supervision.backoff_cap_ms = 100
    return cfg


async def _ult(*args: str) -> trio.CompletedProcess[bytes]:
    return await trio.run_process(
        ult_command(*args),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


@pytest.mark.parametrize("kind", sorted(VENUES))
async def test_an_order_the_restarted_broker_lost_becomes_lost_once_and_cancel_says_so(
    kind: str, tmp_path: Path
) -> None:
    venue = VENUES[kind]
    calls = OpenOrderCalls()
    updates: list[Event] = []
    async with trio.open_nursery() as nursery:
        first = trio.CancelScope()

        async def run_first(task_status: trio.TaskStatus[int]) -> None:
            with first:
                await venue.serve(0)(task_status=task_status)

        port: int = await nursery.start(run_first)
        cfg = _config(tmp_path, venue, port)
        entry = cfg.brokers[0]
        make = broker_kind(kind).factory(kind, entry.settings)
        svc = build_service(
            cfg,
            env={},
            rng=random.Random(11),
            connector_factories={kind: calls.counting(make)},
            reconcile=POLICY,
        )
        with trio.fail_after(20):
            await nursery.start(svc.run)
            sock = await nursery.start(serve_ipc, svc.gateway, ipc_settings(tmp_path / "s"))
        events = svc.bus.subscribe(
            lambda e: isinstance(e, OrderUpdate) and e.order.client_order_id == "rest-1"
        )

        async def collect() -> None:
            async for event in events:
                updates.append(event)

        nursery.start_soon(collect)
        placed = await svc.gateway.handle(Submit(id=1, order=venue.resting))
        assert isinstance(placed, OrderReply) and placed.order.status == "accepted", placed

        # The broker restarts with an empty book: the order is gone there.
        first.cancel()
        await nursery.start(venue.serve(port))
        with trio.fail_after(30):
            while not any(isinstance(u, OrderUpdate) and u.order.status == "lost" for u in updates):
                await calls.wait_for(calls.count + 1)
            # Several more sweeps: a final verdict is never reached (nor published) again.
            await calls.wait_for(calls.count + 4)
        lost = [u for u in updates if isinstance(u, OrderUpdate) and u.order.status == "lost"]
        assert len(lost) == 1
        journaled = await (await svc.journal.get()).get("rest-1")
        assert journaled is not None and journaled.status == "lost"
        assert journaled.reject_reason is not None
        assert f"{kind} no longer has this order" in journaled.reject_reason

        # `ult cancel` by either id: a clear error naming the verdict, exit 1.
        for given in ("rest-1", placed.order.id):
            done = await _ult("cancel", given, "--socket", str(sock))
            assert done.returncode == 1, done
            said = done.stderr.decode()
            assert "already_final" in said and "rest-1) is lost" in said
            assert "no longer has this order" in said
        listed = await _ult("orders", "--open", "--json", "--socket", str(sock))
        assert b"rest-1" not in listed.stdout
        nursery.cancel_scope.cancel()


async def test_a_cancel_the_broker_cannot_place_names_the_id_it_was_given(
    tmp_path: Path,
) -> None:
    venue = FakeVenue("fake")
    quiet = ReconcilePolicy(interval_s=3600)  # no sweep settles it before the cancel
    svc = build_service(
        config(tmp_path),
        env={},
        rng=random.Random(7),
        connector_factories={"fake": lambda: FakeConnector("fake", venue)},
        reconcile=quiet,
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(svc.run)
        # Journaled as open, unknown to the broker by either id (it lost it a moment ago).
        await (await svc.journal.get()).record(order("gone-1", "accepted", oid="b-7"))
        with pytest.raises(NotFound) as refused:
            await svc.gateway.handle(Cancel(id=1, order_id="b-7"))
        nursery.cancel_scope.cancel()
    assert "'b-7'" in refused.value.message
    assert "neither by order id nor by client order id" in refused.value.message


async def test_the_running_sweep_settles_an_order_the_broker_dropped_without_a_restart(
    tmp_path: Path,
) -> None:
    venue = FakeVenue("fake")
    at_venue(venue, order("kept-1", "accepted", oid="b-1", type="limit", limit_price=Decimal(1)))
    async with open_sqlite_store(tmp_path / "journal.db") as store:
        await store.record(order("kept-1", "accepted", oid="b-1"))
    async with running(config(tmp_path), venue) as svc:
        events = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))
        # The venue forgets it (a person cleared it) while the connection stays up.
        del venue.orders["b-1"], venue.by_client["kept-1"]
        with trio.fail_after(10):
            update = await events.receive()
        assert isinstance(update, OrderUpdate)
        assert (update.order.client_order_id, update.order.status) == ("kept-1", "lost")
        health = {h.name: h for h in svc.health().actors}
        assert health["broker.fake"].restarts == 0  # settled by the sweep, not by a crash
