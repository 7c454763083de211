"""OANDA through the whole service: the CLI acceptance run, and a dead stream restarted without loss."""

from __future__ import annotations

import json
import random
import re
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.brokers.oanda.harness import (
    delivered_everything,
    resting_buy,
    running_sim,
    sell_exit,
    settings_for,
)
from ult_actors.brokers.oanda import stream
from ult_actors.brokers.oanda.stream import TransactionCursor
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import AuthFailed, NotReplaceable
from ult_actors.messages import (
    ActorHealthChanged,
    GetHealth,
    GetPositions,
    HealthReply,
    OrderListRequest,
    OrderReply,
    OrderRequest,
    OrdersReply,
    OrderUpdate,
    PositionsReply,
    Replace,
    ReplaceRequest,
    Submit,
    SubmitList,
)
from ult_actors.secrets import Secret
from ult_actors.service import build_service
from ult_actors.sim.oanda.faults import Fault
from ult_actors.testing.process import UltProcess, run_ult, ult_command

SIM_TOKEN = "acceptance-token-7d1e"
SIM_ACCOUNT = "101-001-2468024-001"


@pytest.fixture
def sim_process() -> Iterator[str]:
    """``ult sim oanda --port 0`` as its own process; yields its base URL."""
    env = {"OANDA_API_TOKEN": SIM_TOKEN, "OANDA_ACCOUNT_ID": SIM_ACCOUNT}
    args = ["sim", "oanda", "--port", "0", "--tick", "0"]
    with UltProcess(args, env=env, ports=True, name="sim") as sim:
        sim.start()
        first = sim.log.splitlines()[0]  # printed once it listens
        assert "http://127.0.0.1:" in first, sim.log
        assert SIM_TOKEN not in first
        url = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert url is not None
        yield url.group(0)


def test_ult_submit_wait_fills_at_the_simulator_and_ult_positions_shows_it(
    sim_process: str,
) -> None:
    service = UltProcess.serve(
        env={
            "OANDA_API_TOKEN": SIM_TOKEN,
            "OANDA_ACCOUNT_ID": SIM_ACCOUNT,
            "OANDA_BASE_URL": sim_process,
        }
    )
    try:
        service.start()
        sock = str(service.socket)
        submitted = run_ult(
            "submit", "EUR_USD", "buy", "1000", "--broker", "oanda", "--wait", "--json",
            "--socket", sock,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        order = json.loads(submitted.stdout)
        assert (order["status"], order["broker"], Decimal(order["filled_qty"])) == (
            "filled",
            "oanda",
            Decimal(1000),
        )
        positions = run_ult("positions", "--json", "--socket", sock)
        assert positions.returncode == 0, positions.stderr
        held = {
            (p["broker"], p["symbol"]): Decimal(p["qty"])
            for p in json.loads(positions.stdout)["positions"]
        }
        assert held[("oanda", "EUR_USD")] == Decimal(1000)
        table = run_ult("positions", "--socket", sock)
        assert "EUR_USD" in table.stdout
        assert SIM_TOKEN not in service.log
    finally:
        service.cleanup()


async def test_a_silent_stream_restarts_the_actor_and_the_fill_it_missed_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cursors: list[TransactionCursor] = []

    class Watched(TransactionCursor):
        """The cursors the registry makes, for the test to watch."""

        def __init__(self, last_id: int | None = None) -> None:
            super().__init__(last_id)
            cursors.append(self)

    monkeypatch.setattr(stream, "TransactionCursor", Watched)
    async with running_sim(heartbeat_s=0.1) as sim:
        settings = settings_for(sim, stale_after_s=1.0)
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings)],
        )
        cfg.supervision.backoff_initial_ms = 20
        cfg.supervision.backoff_cap_ms = 100
        # Built from the config alone, as `ult serve` does: the registry must give
        # every incarnation the same transaction cursor.
        svc = build_service(cfg, env={}, rng=random.Random(3))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
            events = svc.bus.subscribe()
            limit = resting_buy("svc-gap-1")
            reply = await svc.gateway.handle(Submit(id=1, order=limit))
            assert isinstance(reply, OrderReply) and reply.order.status == "accepted"
            # The registry's one cursor. A fetch still in flight when the stream is muted
            # heard of the fill before the restart (at load 12-17).
            [cursor] = cursors
            await delivered_everything(cursor, sim)

            # The stream's connection stays up but says nothing more (a new one would work).
            sim.arm(Fault(kind="stream_mute"))
            sim.feed.set_quote("EUR_USD", Decimal("0.99986"), Decimal("1.00000"))
            sim.book.on_prices()  # the limit fills while no one hears of it
            assert sim.book.orders[reply.order.id].state == "FILLED"

            with trio.fail_after(15):
                while True:
                    event = await events.receive()
                    if (
                        isinstance(event, ActorHealthChanged)
                        and event.name == "broker.oanda"
                        and event.state == "restarting"
                    ):
                        break

            with trio.fail_after(15):
                while True:
                    event = await events.receive()
                    if (
                        isinstance(event, OrderUpdate)
                        and event.order.client_order_id == "svc-gap-1"
                        and event.order.status == "filled"
                    ):
                        break
            assert event.fill is not None and event.fill.price == Decimal("1.00000")
            store = await svc.journal.get()
            journaled = await store.get("svc-gap-1")
            assert journaled is not None and journaled.status == "filled"
            positions = await svc.gateway.handle(GetPositions(id=2, broker="oanda"))
            assert isinstance(positions, PositionsReply)
            assert [(p.symbol, p.qty) for p in positions.positions] == [("EUR_USD", Decimal(1000))]
            nursery.cancel_scope.cancel()


async def test_a_fill_whose_stream_event_was_dropped_reaches_the_books_once_without_a_restart(
    tmp_path: Path,
) -> None:
    async with running_sim(heartbeat_s=0.1) as sim:
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[
                BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings_for(sim))
            ],
        )
        svc = build_service(cfg, env={}, rng=random.Random(5))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
            events = svc.bus.subscribe()
            limit = resting_buy("svc-drop-1")
            reply = await svc.gateway.handle(Submit(id=1, order=limit))
            assert isinstance(reply, OrderReply) and reply.order.status == "accepted"

            # The fill happens, its transaction never reaches the stream; the REST record has it
            # and the next heartbeat names it: the gap is fetched with the stream up.
            sim.arm(Fault(kind="drop_events", events=["ORDER_FILL"]))
            sim.feed.set_quote("EUR_USD", Decimal("0.99986"), Decimal("1.00000"))
            sim.book.on_prices()
            assert sim.events_dropped == 1
            later = OrderRequest(
                symbol="EUR_USD", side="buy", qty=Decimal(1), client_order_id="svc-drop-2"
            )
            fills: list[OrderUpdate] = []
            with trio.fail_after(15):
                while True:
                    event = await events.receive()
                    if not isinstance(event, OrderUpdate):
                        continue
                    if event.order.client_order_id == "svc-drop-1" and event.fill is not None:
                        fills.append(event)
                        await svc.gateway.handle(Submit(id=2, order=later))
                    if event.order.client_order_id == "svc-drop-2" and event.fill is not None:
                        break  # streamed after the gap: a repeat of the first would be before it
            assert [(u.fill.qty, u.order.status) for u in fills if u.fill] == [
                (Decimal(1000), "filled")
            ]
            store = await svc.journal.get()
            journaled = await store.get("svc-drop-1")
            assert journaled is not None
            assert (journaled.status, journaled.filled_qty) == ("filled", Decimal(1000))
            positions = await svc.gateway.handle(GetPositions(id=3, broker="oanda"))
            assert isinstance(positions, PositionsReply)
            assert [(p.symbol, p.qty) for p in positions.positions] == [("EUR_USD", Decimal(1001))]
            health = await svc.gateway.handle(GetHealth(id=4))
            assert isinstance(health, HealthReply)
            (broker,) = [a for a in health.health.actors if a.name == "broker.oanda"]
            assert (broker.state, broker.restarts) == ("running", 0)
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"token": Secret("not-the-token")}, "401"),
        ({"environment": "live"}, "live_trading_confirmed"),
    ],
)
async def test_refused_credentials_and_unconfirmed_live_fail_the_actor_without_a_restart_loop(
    tmp_path: Path, overrides: dict[str, object], says: str
) -> None:
    async with running_sim() as sim:
        settings = settings_for(sim, **overrides)
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings)],
        )
        cfg.supervision.backoff_initial_ms = 10
        svc = build_service(cfg, env={}, rng=random.Random(4))
        events = svc.bus.subscribe()
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
                while True:
                    event = await events.receive()
                    if isinstance(event, ActorHealthChanged) and event.state == "failed":
                        break
            assert event.name == "broker.oanda"
            order = OrderRequest(symbol="EUR_USD", side="buy", qty=Decimal(1000))
            with pytest.raises(AuthFailed, match=says):
                await svc.gateway.handle(Submit(id=1, order=order))
            health = await svc.gateway.handle(GetHealth(id=2))
            assert isinstance(health, HealthReply)
            (broker,) = [a for a in health.health.actors if a.name == "broker.oanda"]
            assert (broker.state, broker.restarts) == ("failed", 0)
            # One refused account request for a bad token, none at all for live: no retrying.
            assert sim.requests == (1 if "token" in overrides else 0)
            nursery.cancel_scope.cancel()


async def test_a_replace_through_the_service_keeps_the_partial_fill_and_links_both_orders(
    tmp_path: Path,
) -> None:
    async with running_sim() as sim:
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[
                BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings_for(sim))
            ],
        )
        svc = build_service(cfg, env={}, rng=random.Random(5))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
            events = svc.bus.subscribe()
            limit = OrderRequest(
                symbol="EUR_USD",
                side="buy",
                qty=Decimal(2000),
                type="limit",
                limit_price=Decimal("1.00000"),
                time_in_force="gtc",
                client_order_id="svc-r-1",
            )
            reply = await svc.gateway.handle(Submit(id=1, order=limit))
            assert isinstance(reply, OrderReply) and reply.order.status == "accepted"
            sim.set_price("EUR_USD", {"bid": "0.99990", "ask": "1.00000", "liquidity": "500"})
            sim.set_price("EUR_USD", {"bid": "1.08493", "ask": "1.08507"})
            with trio.fail_after(15):
                while True:
                    event = await events.receive()
                    if (
                        isinstance(event, OrderUpdate)
                        and event.order.client_order_id == "svc-r-1"
                        and event.order.filled_qty == Decimal(500)
                    ):
                        break

            change = ReplaceRequest(
                order_id="svc-r-1", limit_price=Decimal("0.99000"), client_order_id="svc-r-2"
            )
            replaced = await svc.gateway.handle(Replace(id=2, change=change))
            assert isinstance(replaced, OrderReply), replaced
            new = replaced.order
            assert (new.client_order_id, new.replaces, new.limit_price) == (
                "svc-r-2",
                "svc-r-1",
                Decimal("0.99000"),
            )
            assert new.qty - new.filled_qty == Decimal(1500)
            store = await svc.journal.get()
            old = await store.get("svc-r-1")
            assert old is not None
            assert (old.status, old.replaced_by, old.filled_qty) == (
                "replaced",
                "svc-r-2",
                Decimal(500),
            )
            (working,) = sim.book.pending()
            assert (working.client_extensions, working.units) == ({"id": "svc-r-2"}, Decimal(1500))

            sim.set_price("EUR_USD", {"bid": "0.98990", "ask": "0.99000"})  # it fills
            with trio.fail_after(15):
                while True:
                    event = await events.receive()
                    if (
                        isinstance(event, OrderUpdate)
                        and event.order.client_order_id == "svc-r-2"
                        and event.order.status == "filled"
                    ):
                        break
            late = ReplaceRequest(
                order_id="svc-r-2", limit_price=Decimal("0.98000"), client_order_id="svc-r-3"
            )
            with pytest.raises(NotReplaceable, match="is filled"):
                await svc.gateway.handle(Replace(id=3, change=late))
            nursery.cancel_scope.cancel()


async def test_a_replace_that_loses_the_race_with_a_fill_is_refused_and_the_fill_kept(
    tmp_path: Path,
) -> None:
    async with running_sim() as sim:
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[
                BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings_for(sim))
            ],
        )
        svc = build_service(cfg, env={}, rng=random.Random(6))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
            limit = resting_buy("svc-race-1")
            await svc.gateway.handle(Submit(id=1, order=limit))
            sim.arm(Fault(kind="stream_mute"))  # the service does not hear of the fill
            sim.set_price("EUR_USD", {"bid": "0.99990", "ask": "1.00000"})
            change = ReplaceRequest(
                order_id="svc-race-1", limit_price=Decimal("0.99000"), client_order_id="svc-race-2"
            )
            with pytest.raises(NotReplaceable, match="filled"):
                await svc.gateway.handle(Replace(id=2, change=change))
            store = await svc.journal.get()
            old, new = await store.get("svc-race-1"), await store.get("svc-race-2")
            assert old is not None and (old.status, old.filled_qty) == ("filled", Decimal(1000))
            assert new is not None and new.status == "rejected"
            assert [o.state for o in sim.book.orders.values()] == ["FILLED"]
            nursery.cancel_scope.cancel()


async def test_a_native_bracket_and_an_emulated_oco_through_the_service(tmp_path: Path) -> None:
    """The bracket rides on v20's on-fill exits; the OCO is two orders the service pairs."""
    async with running_sim() as sim:
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[
                BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings_for(sim))
            ],
        )
        svc = build_service(cfg, env={}, rng=random.Random(7))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(15):
                await nursery.start(svc.run)
            events = svc.bus.subscribe()
            store = await svc.journal.get()

            async def settled(coid: str, status: str) -> None:
                with trio.fail_after(15):
                    while (now := await store.get(coid)) is None or now.status != status:
                        await events.receive()

            entry = OrderRequest(
                symbol="EUR_USD",
                side="buy",
                qty=Decimal(1000),
                type="limit",
                limit_price=Decimal("1.08000"),
                time_in_force="gtc",
                client_order_id="svc-br",
            )
            bracket = OrderListRequest(
                contingency="bracket",
                list_id="svc-br-list",
                legs=[
                    entry,
                    sell_exit("svc-br-tp", "limit", "1.09000"),
                    sell_exit("svc-br-sl", "stop", "1.07000"),
                ],
            )
            reply = await svc.gateway.handle(SubmitList(id=1, orders=bracket))
            assert isinstance(reply, OrdersReply)
            assert [o.status for o in reply.orders] == ["accepted", "held", "held"]
            sim.set_price("EUR_USD", {"bid": "1.07990", "ask": "1.08000"})  # the entry fills
            await settled("svc-br-tp", "accepted")
            sim.set_price("EUR_USD", {"bid": "1.06990", "ask": "1.07000"})  # through the stop
            await settled("svc-br-sl", "filled")
            await settled("svc-br-tp", "canceled")
            assert sim.book.pending() == [] and sim.book.open_trades("EUR_USD") == []

            await svc.gateway.handle(
                Submit(id=2, order=OrderRequest(symbol="EUR_USD", side="buy", qty=Decimal(1000)))
            )
            oco = OrderListRequest(
                contingency="oco",
                list_id="svc-oco-list",
                legs=[
                    sell_exit("svc-oco-tp", "limit", "1.08000"),
                    sell_exit("svc-oco-sl", "stop", "1.06000"),
                ],
            )
            reply = await svc.gateway.handle(SubmitList(id=3, orders=oco))
            assert isinstance(reply, OrdersReply)
            assert {o.type for o in sim.book.pending()} == {"LIMIT", "STOP"}  # two plain orders
            sim.set_price("EUR_USD", {"bid": "1.08000", "ask": "1.08010"})  # the take profit
            await settled("svc-oco-tp", "filled")
            await settled("svc-oco-sl", "canceled")
            assert sim.book.pending() == []
            nursery.cancel_scope.cancel()


async def test_an_emulated_oco_whose_leg_filled_while_the_service_was_down_is_settled_at_start(
    tmp_path: Path,
) -> None:
    async with running_sim() as sim:
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[
                BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings_for(sim))
            ],
        )
        oco = OrderListRequest(
            contingency="oco",
            list_id="down-oco",
            legs=[
                sell_exit("down-tp", "limit", "1.09000"),
                sell_exit("down-sl", "stop", "1.06000"),
            ],
        )
        async with trio.open_nursery() as nursery:
            svc = build_service(cfg, env={}, rng=random.Random(8))
            with trio.fail_after(15):
                await nursery.start(svc.run)
            bought = OrderRequest(symbol="EUR_USD", side="buy", qty=Decimal(1000))
            await svc.gateway.handle(Submit(id=1, order=bought))
            await svc.gateway.handle(SubmitList(id=2, orders=oco))
            nursery.cancel_scope.cancel()  # the service is gone
        sim.set_price("EUR_USD", {"bid": "1.09000", "ask": "1.09010"})  # the take profit fills
        take, stop = (sim.book.find(f"@down-{leg}") for leg in ("tp", "sl"))
        assert take is not None and stop is not None
        assert (take.state, stop.state) == ("FILLED", "PENDING")

        async with trio.open_nursery() as nursery:
            svc = build_service(cfg, env={}, rng=random.Random(9))
            with trio.fail_after(15):
                await nursery.start(svc.run)
            store = await svc.journal.get()
            events = svc.bus.subscribe()
            with trio.fail_after(15):
                while (now := await store.get("down-sl")) is None or now.status != "canceled":
                    await events.receive()
            assert stop.state == "CANCELLED"  # at OANDA too: no leg left working
            filled = await store.get("down-tp")
            assert filled is not None and filled.status == "filled"
            nursery.cancel_scope.cancel()


def test_the_simulator_command_explains_itself() -> None:
    done = subprocess.run(
        ult_command("sim", "oanda", "--help"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    assert "--port" in done.stdout


def test_health_counts_the_open_legs_of_lists_the_service_emulates(sim_process: str) -> None:
    # OANDA has no OTO: the service holds the child until the parent fills.
    env = {"OANDA_API_TOKEN": SIM_TOKEN, "OANDA_ACCOUNT_ID": SIM_ACCOUNT,
           "OANDA_BASE_URL": sim_process, "DEFAULT_BROKER": "oanda"}  # fmt: skip
    with UltProcess.serve(env=env) as service:
        service.start()
        sock = ("--socket", str(service.socket))
        assert json.loads(run_ult("health", "--json", *sock).stdout)["emulated_legs"] == {}
        placed = run_ult("oto", "EUR_USD", "buy", "1000", "--type", "limit", "--limit-price",
                         "0.5", "--tif", "gtc", "--then", "sell", "1000", "--type", "limit",
                         "--limit-price", "2", *sock)  # fmt: skip
        assert placed.returncode == 0, placed.stdout + placed.stderr
        assert json.loads(run_ult("health", "--json", *sock).stdout)["emulated_legs"] == {
            "oanda": 2
        }
        human = run_ult("health", *sock).stdout.splitlines()
        assert "open legs of order lists the service emulates: oanda 2" in human
