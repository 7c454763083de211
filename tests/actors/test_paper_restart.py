"""The service on the real paper broker: restarts of its actor and of the whole service.

A paper broker actor that crashes is restarted with a fresh connector that
reloads the account from its SQLite file, exactly as a remote connector
reconnects to its broker. Orders queued or in flight across the crash are
each answered once, and the venue holds each exactly once.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from decimal import Decimal
from pathlib import Path

import msgspec
import trio
import trio.testing

from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.base import Connector
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection, load_config
from ult_actors.errors import Internal, NotFound
from ult_actors.messages import (
    AccountsReply,
    GetAccount,
    GetOrder,
    GetPositions,
    Order,
    OrderReply,
    OrderRequest,
    PositionsReply,
    Submit,
)
from ult_actors.service import Service, build_service
from ult_actors.testing.connector import FaultPlan, FaultyConnector

QTY = Decimal(3)
#: More orders than a broker actor submits at once, so some wait in its mailbox.
QUEUED = 100


def paper_config(state_dir: Path) -> ServiceConfig:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(state_dir)),
        brokers=[
            BrokerEntry(
                name="paper", kind="paper", enabled=True, settings=PaperSettings(tick_interval_s=0)
            )
        ],
    )
    cfg.supervision.backoff_initial_ms = 20
    cfg.supervision.backoff_cap_ms = 50
    return cfg


@asynccontextmanager
async def running(
    cfg: ServiceConfig, factories: dict[str, Callable[[], Connector]] | None = None
) -> AsyncIterator[Service]:
    svc = build_service(
        cfg,
        env={},
        rng=random.Random(11),
        connector_factories=factories,
        # Paper answers synchronously: nothing can still be in flight after a crash.
        reconcile=ReconcilePolicy(settle_grace_s=0.05),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


_ids = iter(range(1, 1_000_000))


async def submit(svc: Service, coid: str) -> Order:
    request = OrderRequest(symbol="AAPL", side="buy", qty=QTY, client_order_id=coid)
    with trio.fail_after(20):
        reply = await svc.gateway.handle(Submit(id=next(_ids), order=request))
    assert isinstance(reply, OrderReply), reply
    return reply.order


async def venue_book(path: Path) -> tuple[dict[str, Order], Decimal]:
    """Every order the paper venue holds for our client ids, and the AAPL position."""
    connector = PaperConnector("paper", PaperSettings(tick_interval_s=0, state_path=str(path)))
    await connector.connect()
    try:
        orders = {}
        for i in range(QUEUED):
            for prefix in ("q", "c"):
                coid = f"{prefix}-{i}"
                with suppress(NotFound):
                    orders[coid] = await connector.get_order_by_client_id(coid)
        position = {p.symbol: p.qty for p in await connector.positions()}.get("AAPL", Decimal(0))
        return orders, position
    finally:
        await connector.disconnect()


def disturbed(tmp_path: Path, cable: FaultPlan) -> dict[str, Callable[[], Connector]]:
    """The real paper connector with a gate in front of submit and a cable to pull."""
    settings = PaperSettings(tick_interval_s=0, state_path=str(tmp_path / "paper-paper.db"))
    return {"paper": lambda: FaultyConnector(PaperConnector("paper", settings), cable)}


async def test_killing_the_paper_actor_with_orders_queued_answers_each_exactly_once(
    tmp_path: Path,
) -> None:
    cable = FaultPlan()
    cable.gate = trio.Event()  # hold the submits in flight so the rest queue up behind them
    async with running(paper_config(tmp_path), disturbed(tmp_path, cable)) as svc:
        answers: dict[str, list[Order]] = {}

        async def one(i: int) -> None:
            order = await submit(svc, f"q-{i}")
            answers.setdefault(order.client_order_id, []).append(order)

        async with trio.open_nursery() as nursery:
            for i in range(QUEUED):
                nursery.start_soon(one, i)
            await trio.testing.wait_all_tasks_blocked()
            assert svc.brokers["paper"].depth > 0  # queued behind the held submit
            cable.pull.set()  # the connection drops: the actor crashes
            await trio.testing.wait_all_tasks_blocked()
            cable.gate.set()
        brokers = svc.root.child("brokers").spec.supervisor
        assert brokers is not None
        assert brokers.child("broker.paper").health.restarts == 1
    assert cable.connects == 2
    assert sorted(answers) == sorted(f"q-{i}" for i in range(QUEUED))
    assert all(len(v) == 1 and v[0].status == "filled" for v in answers.values())
    orders, position = await venue_book(tmp_path / "paper-paper.db")
    assert sorted(orders) == sorted(answers)  # none lost
    assert position == QUEUED * QTY  # none doubled
    assert {o.id for o in orders.values()} == {v[0].id for v in answers.values()}


async def test_a_crash_after_the_venue_took_an_order_settles_it_by_client_id(
    tmp_path: Path,
) -> None:
    cable = FaultPlan()
    cable.crash_after_apply = 1  # the first order is placed, then its reply is lost
    async with running(paper_config(tmp_path), disturbed(tmp_path, cable)) as svc:
        answers: dict[str, list[Order]] = {}
        crashed: list[str] = []

        async def one(i: int) -> None:
            try:
                order = await submit(svc, f"c-{i}")
            except Internal as exc:
                # The submit that crashed the actor is answered, not redelivered.
                assert "crashed actor broker.paper (RuntimeError)" in exc.message
                crashed.append(f"c-{i}")
                return
            answers.setdefault(order.client_order_id, []).append(order)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(one, i)
        assert len(crashed) == 1
        # Reconciliation found it at the venue by client order id: the journal has it filled.
        with trio.fail_after(20):
            while (found := await journaled(svc, crashed[0])).status != "filled":
                await trio.sleep(0.05)
    assert cable.connects == 2  # crashed once, reconnected once
    assert sorted([*answers, *crashed]) == sorted(f"c-{i}" for i in range(10))
    assert all(len(v) == 1 and v[0].status == "filled" for v in answers.values())
    orders, position = await venue_book(tmp_path / "paper-paper.db")
    assert sorted(orders) == sorted([*answers, *crashed]) and found.id == orders[crashed[0]].id
    assert position == 10 * QTY  # the crashed order was found, not placed again


async def journaled(svc: Service, coid: str) -> Order:
    """The order as the service's journal has it."""
    reply = await svc.gateway.handle(GetOrder(id=next(_ids), order_id=coid))
    assert isinstance(reply, OrderReply), reply
    return reply.order


def default_paper_config(state_dir: Path) -> ServiceConfig:
    """No file, no environment: the stock paper broker, its account in ``state_dir``."""
    cfg = load_config(None, env={})
    cfg.service.state_dir = str(state_dir)
    cfg.brokers[0].settings = msgspec.structs.replace(cfg.brokers[0].settings, tick_interval_s=0)
    return cfg


async def test_the_service_keeps_its_paper_account_in_the_state_dir_across_restarts(
    tmp_path: Path,
) -> None:
    async with running(default_paper_config(tmp_path)) as svc:
        first = await submit(svc, "s-1")
        assert first.status == "filled"
    assert (tmp_path / "paper.db").is_file()  # the file every paper connection shares
    async with running(default_paper_config(tmp_path)) as svc:
        positions = await svc.gateway.handle(GetPositions(id=1, broker="paper"))
        assert isinstance(positions, PositionsReply)
        assert [(p.symbol, p.qty) for p in positions.positions] == [("AAPL", QTY)]
        again = await svc.gateway.handle(GetOrder(id=2, order_id="s-1"))
        assert isinstance(again, OrderReply) and again.order.id == first.id
        accounts = await svc.gateway.handle(GetAccount(id=3, broker="paper"))
        assert isinstance(accounts, AccountsReply)
        assert accounts.accounts[0].cash < PaperSettings().starting_cash
