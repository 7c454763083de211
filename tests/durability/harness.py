"""What the durability tests share: a tree on a fake broker that can fail, orders, read-backs.

The read-backs look at what a stopped service left: the journal file, the paper broker's book.
No tests live here; the test modules import these helpers.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import trio

from tests.fakes import FakeConnector, FakeVenue
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.base import Connector
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import BrokerUnavailable, NotFound
from ult_actors.journal import changelog
from ult_actors.messages import Order, OrderUpdate, Position
from ult_actors.service import Service, build_service

T = TypeVar("T")

FAST = ReconcilePolicy(settle_grace_s=0.05, stuck_after_s=0.1, interval_s=0.05, sweep_every=2)


class FlakyConnector(FakeConnector):
    """A fake connector whose lookups and position reports can be switched off."""

    fail_lookups = False
    fail_positions = False
    mute_stream = False

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        if FlakyConnector.fail_lookups:
            raise BrokerUnavailable("fake broker: lookups failing")
        return await super().get_order_by_client_id(client_order_id)

    async def stream_updates(self, sink: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async def maybe(update: OrderUpdate) -> None:
            if not FlakyConnector.mute_stream:
                await sink(update)

        await super().stream_updates(maybe, task_status=task_status)

    async def positions(self) -> list[Position]:
        if FlakyConnector.fail_positions:
            raise BrokerUnavailable("fake broker: positions failing")
        return await super().positions()


def config(tmp: Path) -> ServiceConfig:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="fake", state_dir=str(tmp)),
        brokers=[BrokerEntry(name="fake", kind="fake", enabled=True, settings=None)],
    )
    cfg.retry.delay_ms = 10
    cfg.retry.max_retries = 2
    cfg.supervision.backoff_initial_ms = 50
    cfg.supervision.backoff_cap_ms = 200
    return cfg


@asynccontextmanager
async def running(
    cfg: ServiceConfig, venue: FakeVenue, reconcile: ReconcilePolicy = FAST
) -> AsyncIterator[Service]:
    svc = build_service(
        cfg,
        env={},
        rng=random.Random(7),
        connector_factories={"fake": lambda: FlakyConnector("fake", venue)},
        reconcile=reconcile,
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


def order(coid: str, status: str, *, oid: str = "", age_s: float = 0, **more: Any) -> Order:
    at = time.time_ns() - int(age_s * 1e9)
    fields: dict[str, Any] = {
        "broker": "fake",
        "symbol": "AAPL",
        "side": "buy",
        "qty": Decimal(10),
        "type": "market",
        "time_in_force": "day",
        "created_at": at,
        "updated_at": at,
        "outcome": "unknown" if status == "pending_new" else "definitive",
    }
    fields.update(more)
    return Order(id=oid, client_order_id=coid, status=status, **fields)  # type: ignore[arg-type]


def at_venue(venue: FakeVenue, o: Order) -> None:
    venue.orders[o.id] = o
    venue.by_client[o.client_order_id] = o.id


async def journal_of(svc: Service, coid: str) -> Order:
    store = await svc.journal.get()
    found = await store.get(coid)
    assert found is not None, coid
    return found


@dataclass
class OpenOrderCalls:
    """Counts the broker's open-orders answers (each sweep asks once), to wait on sweeps."""

    count: int = 0
    changed: trio.Event = field(default_factory=trio.Event)

    def counting(self, make: Callable[[], Connector]) -> Callable[[], Connector]:
        def build() -> Connector:
            connector = make()
            inner = connector.open_orders

            async def open_orders() -> list[Any]:
                answer = await inner()
                self.count += 1
                self.changed.set()
                self.changed = trio.Event()
                return answer

            connector.open_orders = open_orders  # type: ignore[method-assign]
            return connector

        return build

    async def wait_for(self, count: int) -> None:
        while self.count < count:
            await self.changed.wait()


def journal_status(path: Path, client_order_id: str) -> str | None:
    """The status the journal file holds for one order (read as another process would)."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT status FROM orders WHERE client_order_id = ?", (client_order_id,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None  # not created yet
    finally:
        conn.close()
    return str(row[0]) if row else None


def journal_log_status(path: Path, client_order_id: str) -> str | None:
    """The status of one order's latest record in the journal's change log, as a replay
    reads it: durable (a ``kill -9`` keeps it) whether or not the file holds it yet."""
    status = None
    for record in changelog.read(path):
        for row in record.rows:
            if row[1] == client_order_id:
                status = row[3]
    return status


def paper_account(state_dir: Path, coids: list[str]) -> tuple[dict[str, Order], dict[str, Any]]:
    """What the paper broker itself holds (read with the service stopped): orders, positions."""

    async def read(connector: PaperConnector) -> tuple[dict[str, Order], dict[str, Any]]:
        orders = {}
        for coid in coids:
            with contextlib.suppress(NotFound):
                orders[coid] = await connector.get_order_by_client_id(coid)
        return orders, {p.symbol: p.qty for p in await connector.positions()}

    return _read_paper(state_dir, read)


def paper_open_orders(state_dir: Path) -> list[Order]:
    """The paper broker's own open orders (read with the service stopped)."""
    return _read_paper(state_dir, lambda connector: connector.open_orders())


def _read_paper(state_dir: Path, read: Callable[[PaperConnector], Awaitable[T]]) -> T:
    async def main() -> T:
        settings = PaperSettings(state_path=str(state_dir / "paper.db"), tick_interval_s=0)
        connector = PaperConnector("paper", settings)
        await connector.connect()
        try:
            return await read(connector)
        finally:
            await connector.disconnect()

    return trio.run(main)
