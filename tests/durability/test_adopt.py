"""Orders open at a broker that the journal lacks are adopted, never sent, never twice.

A deleted (or new) journal while orders rest at the broker: the service
starts degraded and says so (health, STATUS, one warning line), with the
orders journaled as the broker has them, ``origin = "adopted"``, and counted
by risk. An order another client places at the broker while the service
runs is adopted by the continuous sweep.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import httpx
import structlog
import trio
import trio.testing

from tests.brokers.alpaca import harness as alpaca_harness
from tests.durability.harness import (
    FAST,
    FlakyConnector,
    OpenOrderCalls,
    at_venue,
    config,
    order,
    paper_account,
    running,
)
from tests.fakes import FakeConnector, FakeVenue
from tests.service_harness import one_broker_config
from ult_actors.actors.reconcile import ReconcilePolicy, reconcile_stuck
from ult_actors.brokers.registry import broker_kind
from ult_actors.journal import MemoryStore
from ult_actors.messages import Event, Order, OrderReply, OrderRequest, OrderUpdate, Submit
from ult_actors.service import build_service
from ult_actors.systemd.watchdog import status_line
from ult_actors.testing.process import UltProcess, run_ult


async def test_an_empty_journal_adopts_the_broker_orders_and_starts_degraded(
    tmp_path: Path,
) -> None:
    venue = FakeVenue("fake")
    at_venue(venue, order("web-1", "accepted", oid="b-1", type="limit", limit_price=Decimal(1)))
    at_venue(
        venue,
        order(
            "web-2", "partially_filled", oid="b-2", type="limit", limit_price=Decimal(1),
            filled_qty=Decimal(4), avg_fill_price=Decimal(1),
        ),
    )  # fmt: skip
    venue.ids = iter(range(100, 200))  # type: ignore[assignment]
    calls = OpenOrderCalls()
    svc = build_service(
        config(tmp_path),  # a state directory with no journal at all
        env={},
        rng=random.Random(7),
        connector_factories={"fake": calls.counting(lambda: FakeConnector("fake", venue))},
        reconcile=FAST,
    )
    updates: list[Event] = []
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(svc.run)
            events = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))

            async def collect() -> None:
                async for event in events:
                    updates.append(event)

            nursery.start_soon(collect)
            store = await svc.journal.get()
            for coid, status, filled in (
                ("web-1", "accepted", 0),
                ("web-2", "partially_filled", 4),
            ):
                adopted = await store.get(coid)
                assert adopted is not None
                assert (adopted.status, adopted.filled_qty, adopted.origin) == (
                    status,
                    Decimal(filled),
                    "adopted",
                )
            # Risk counts them (it started after they were adopted: from the journal).
            assert set(svc.risk_state.open_orders) == {"web-1", "web-2"}
            assert svc.risk_state.open_orders["web-2"].qty == Decimal(6)
            # Loud: health, STATUS.
            assert svc.health().degraded == [
                "journal had no record of 2 open orders at fake (adopted)"
            ]
            assert "DEGRADED: journal had no record of 2 open orders at fake" in status_line(svc)
            # A client's own order stays the client's; nothing adopted is ever sent.
            mine = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="mine-1")
            placed = await svc.gateway.handle(Submit(id=1, order=mine))
            assert isinstance(placed, OrderReply) and placed.order.origin == "client"
            with trio.fail_after(10):  # sweeps go on: nothing is adopted a second time
                await calls.wait_for(calls.count + 4)
            nursery.cancel_scope.cancel()
    assert venue.submits == 1
    assert not [u for u in updates if isinstance(u, OrderUpdate) and u.order.origin == "adopted"]
    [line] = [e for e in logs if e["event"].startswith("starting degraded")]
    assert (line["log_level"], line["adopted"]) == ("warning", {"fake": 2})
    adopting = [e for e in logs if e["event"].startswith("adopting an order")]
    assert sorted(e["client_order_id"] for e in adopting) == ["web-1", "web-2"]
    assert all(e["log_level"] == "warning" for e in adopting)


def test_a_deleted_journal_over_the_real_socket_adopts_the_paper_orders_once(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    coids = [f"rest-{i}" for i in range(3)]
    first = UltProcess.serve(state_dir=state)
    try:
        first.start()
        _rest_at_paper(first, coids)
    finally:
        first.cleanup()
    for leftover in state.glob("journal.db*"):
        leftover.unlink()  # the journal is gone; the paper account still holds the orders

    second = UltProcess.serve(state_dir=state)
    try:
        second.start()
        sock = str(second.socket)
        listed = run_ult("orders", "--open", "--json", "--socket", sock)
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)["orders"]
        assert sorted(r["client_order_id"] for r in rows) == coids
        assert {r["origin"] for r in rows} == {"adopted"}
        table = run_ult("orders", "--open", "--socket", sock)
        assert table.stdout.count("accepted (adopted)") == 3, table.stdout
        detail = run_ult("order", "rest-0", "--socket", sock)
        assert "origin" in detail.stdout and "adopted" in detail.stdout, detail.stdout
        health = run_ult("health", "--json", "--socket", sock)
        degraded = json.loads(health.stdout)["degraded"]
        assert degraded == ["journal had no record of 3 open orders at paper (adopted)"]
        shown = run_ult("health", "--socket", sock)
        assert "degraded: journal had no record of 3 open orders at paper" in shown.stdout
        log = [json.loads(line) for line in second.log.splitlines() if line.startswith("{")]
        [loud] = [e for e in log if e.get("event", "").startswith("starting degraded")]
        assert (loud["level"], loud["adopted"]) == ("warning", {"paper": 3})
    finally:
        second.stop()
    orders, _ = paper_account(state, coids)
    assert sorted(orders) == coids  # each still the one order the broker had: none sent again
    second.cleanup()


async def test_an_order_another_client_places_at_the_alpaca_simulator_is_adopted_by_the_sweep(
    tmp_path: Path,
) -> None:
    async with alpaca_harness.running_sim() as (sim, port):
        cfg = one_broker_config(tmp_path, "alpaca", alpaca_harness.settings_for(port))
        entry = cfg.brokers[0]
        calls = OpenOrderCalls()
        svc = build_service(
            cfg,
            env={},
            rng=random.Random(3),
            connector_factories={
                "alpaca": calls.counting(broker_kind("alpaca").factory("alpaca", entry.settings))
            },
            reconcile=ReconcilePolicy(interval_s=0.05, sweep_every=2),
        )
        with structlog.testing.capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(20):
                    await nursery.start(svc.run)
                events = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))
                sim.mute_streams()  # the stream says nothing of it: only the sweep can find it
                await _place_elsewhere(port, "elsewhere-1", qty="3", type="limit", limit_price="1.00")
                with trio.fail_after(15):
                    update = await events.receive()
                assert isinstance(update, OrderUpdate)
                assert (update.order.client_order_id, update.order.origin) == ("elsewhere-1", "adopted")
                assert update.order.status == "accepted" and update.order.qty == Decimal(3)
                journaled = await (await svc.journal.get()).get("elsewhere-1")
                assert journaled is not None and journaled.origin == "adopted"
                await trio.testing.wait_all_tasks_blocked()  # risk has read the same event
                assert "elsewhere-1" in svc.risk_state.open_orders  # risk counts it from the event
                assert svc.health().degraded == []  # found while running: adopted, not degraded
                with trio.fail_after(10):
                    await calls.wait_for(calls.count + 4)
                assert events.queued == 0  # not adopted (nor published) a second time
                nursery.cancel_scope.cancel()
        # Loud: a warning for the order, and the sweep's summary at warning too.
        adopting = [e for e in logs if e["event"].startswith("adopting an order")]
        assert [(e["client_order_id"], e["log_level"]) for e in adopting] == [
            ("elsewhere-1", "warning")
        ]
        swept = [e for e in logs if e["event"] == "reconciled stuck orders" and e["adopted"]]
        assert [(e["adopted_ids"], e["log_level"]) for e in swept] == [(["elsewhere-1"], "warning")]


async def _place_elsewhere(port: int, coid: str, **order: str) -> None:
    """Another client of the same account places an order through Alpaca's REST API."""
    body = {"symbol": "AAPL", "side": "buy", "time_in_force": "gtc", "client_order_id": coid}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as other:
        answer = await other.post(
            "/v2/orders",
            headers={
                "APCA-API-KEY-ID": alpaca_harness.KEY,
                "APCA-API-SECRET-KEY": alpaca_harness.SECRET,
            },
            json={**body, **order},
        )
    assert answer.status_code == 200, answer.text


async def test_a_partly_filled_order_the_sweep_adopts_is_counted_by_risk_and_positions(
    tmp_path: Path,
) -> None:
    venue = FakeVenue("fake")
    async with running(config(tmp_path), venue) as svc:
        events = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))
        FlakyConnector.mute_stream = True  # only the sweep can find it
        at_venue(
            venue,
            order(
                "web-3", "partially_filled", oid="b-3", type="limit", limit_price=Decimal(1),
                filled_qty=Decimal(4), avg_fill_price=Decimal(1),
            ),
        )  # fmt: skip
        with trio.fail_after(10):
            update = await events.receive()
        assert isinstance(update, OrderUpdate)
        assert (update.order.client_order_id, update.order.origin) == ("web-3", "adopted")
        await trio.testing.wait_all_tasks_blocked()  # risk and positions have read it
        assert svc.risk_state.open_orders["web-3"].qty == Decimal(6)  # what may still fill
        # From the event: the broker's position report (pulled at start) had nothing yet.
        held = {(p.symbol, p.qty) for p in svc.book.positions("fake")}
        assert held == {("AAPL", Decimal(4))}


async def test_a_fill_of_another_clients_order_on_the_stream_is_adopted_and_counted(
    tmp_path: Path,
) -> None:
    async with alpaca_harness.running_sim() as (_sim, port):
        cfg = one_broker_config(tmp_path, "alpaca", alpaca_harness.settings_for(port))
        svc = build_service(cfg, env={}, rng=random.Random(3))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(svc.run)
            events = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))
            await _place_elsewhere(port, "elsewhere-2", qty="2", type="market", time_in_force="day")
            with trio.fail_after(15):
                while True:
                    update = await events.receive()
                    assert isinstance(update, OrderUpdate)
                    assert update.order.origin == "adopted"  # every report of it, from the first
                    if update.order.status == "filled":
                        break
            journaled = await (await svc.journal.get()).get("elsewhere-2")
            assert journaled is not None
            assert (journaled.status, journaled.origin) == ("filled", "adopted")
            await trio.testing.wait_all_tasks_blocked()  # positions has read the fill
            held = {(p.broker, p.symbol): p.qty for p in svc.book.positions("alpaca")}
            assert held == {("alpaca", "AAPL"): Decimal(2)}
            nursery.cancel_scope.cancel()


class _Side:
    """A broker side for ``reconcile_stuck`` alone: one open order, a submit of it maybe running."""

    name = "fake"

    def __init__(self, theirs: Order, store: MemoryStore) -> None:
        self.theirs = theirs
        self.store = store
        self.submitting = {theirs.client_order_id}

    async def lookup(self, client_order_id: str) -> Order | None:
        return self.theirs if client_order_id == self.theirs.client_order_id else None

    async def open_orders(self) -> list[Order]:
        return [self.theirs]

    async def settle(self, order: Order) -> Order:
        await self.store.record(order)
        return order

    async def resubmit(self, order: Order) -> Order:
        raise AssertionError("nothing is sent by a sweep")

    def in_flight(self, client_order_id: str) -> bool:
        return client_order_id in self.submitting


async def test_an_order_being_submitted_is_never_adopted_even_before_its_record_is_readable() -> None:
    store = MemoryStore()
    side = _Side(order("mine-1", "accepted", oid="b-1"), store)
    # Our submit of it is running and its journal record is not readable yet.
    summary = await reconcile_stuck(side, store, FAST, sweep=True)
    assert summary.adopted == [] and await store.get("mine-1") is None
    side.submitting.clear()  # no submit of ours, and the journal still lacks it: foreign
    summary = await reconcile_stuck(side, store, FAST, sweep=True)
    adopted = await store.get("mine-1")
    assert summary.adopted == ["mine-1"] and adopted is not None and adopted.origin == "adopted"
    summary = await reconcile_stuck(side, store, FAST, sweep=True)
    assert summary.adopted == []  # known now: never adopted twice


def _rest_at_paper(service: UltProcess, coids: list[str]) -> None:
    for coid in coids:
        placed = run_ult(
            "submit", "AAPL", "buy", "1", "--type", "limit", "--limit-price", "1",
            "--tif", "gtc", "--client-order-id", coid, "--socket", str(service.socket),
        )  # fmt: skip
        assert placed.returncode == 0, placed.stderr
