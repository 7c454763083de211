#!/usr/bin/env python3
"""The service ``scripts/chaos.py`` runs and kills: the real tree, its broker behind faults.

It is ``ult serve`` (the same ``build_service``, IPC server, journal and
supervision) except that the paper connector is wrapped in
``FaultyConnector``, which breaks calls the way a remote broker does, drawn
from a ``random.Random`` seeded by ``--seed``:

- ``drop``: the connection drops before the broker read the request (not applied);
- ``http_5xx``: the broker answers 503 (not applied);
- ``http_429``: rate limited, with a retry-after (not applied);
- ``slow``: the reply comes late (applied);
- ``lose_reply``: the broker applied the order, then the reply was lost;
- ``actor_crash``: the broker actor crashes (a bug) right after the order was applied;
- ``stream_drop``: the update stream is cut, which restarts the broker actor.

Each fault is appended to ``--faults-log`` as one JSON line (one ``write``
each, so a ``kill -9`` loses none already made).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.base import UpdateSink
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.cli.serve import ipc_child, run_service
from ult_actors.config import load_config
from ult_actors.errors import BrokerUnavailable, RateLimited
from ult_actors.logsetup import configure_logging
from ult_actors.messages import Account, Order, OrderRequest, Position
from ult_actors.service import build_service

#: Relative weights of fault kinds on a submit and on a query.
SUBMIT_FAULTS = {
    "drop": 3,
    "http_5xx": 3,
    "http_429": 2,
    "slow": 2,
    "lose_reply": 3,
    "actor_crash": 1,
}
QUERY_FAULTS = {"drop": 2, "http_5xx": 2, "http_429": 1, "slow": 1}


class FaultPlan:
    """Seeded decisions of which call fails how; every fault is logged to a file."""

    def __init__(self, seed: int, rate: float, log_path: Path, *, stream_drop_every_s: float):
        self.rng = random.Random(seed)
        self.rate = rate
        self.stream_drop_every_s = stream_drop_every_s
        self._fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def roll(self, op: str, weights: dict[str, int]) -> str | None:
        """The fault for this call, or ``None``."""
        if self.rng.random() >= self.rate:
            return None
        kinds = list(weights)
        kind = self.rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
        self.note(kind, op)
        return kind

    def note(self, kind: str, op: str) -> None:
        os.write(self._fd, json.dumps({"kind": kind, "op": op}).encode() + b"\n")

    def slow_s(self) -> float:
        return self.rng.uniform(0.01, 0.15)


class FaultyConnector:
    """A connector that breaks calls to the one it wraps, as ``FaultPlan`` says."""

    def __init__(self, inner: PaperConnector, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        self.name = inner.name

    async def _query_fault(self, op: str) -> None:
        kind = self.plan.roll(op, QUERY_FAULTS)
        if kind == "drop":
            raise BrokerUnavailable("chaos: connection dropped", broker=self.name)
        if kind == "http_5xx":
            raise BrokerUnavailable("chaos: HTTP 503", broker=self.name)
        if kind == "http_429":
            raise RateLimited("chaos: HTTP 429", retry_after=0.02, broker=self.name)
        if kind == "slow":
            await trio.sleep(self.plan.slow_s())

    async def connect(self) -> None:
        await self.inner.connect()

    async def disconnect(self) -> None:
        await self.inner.disconnect()

    async def submit(self, request: OrderRequest) -> Order:
        kind = self.plan.roll("submit", SUBMIT_FAULTS)
        if kind == "drop":
            raise BrokerUnavailable("chaos: connection dropped before the order", broker=self.name)
        if kind == "http_5xx":
            raise BrokerUnavailable("chaos: HTTP 503", broker=self.name)
        if kind == "http_429":
            raise RateLimited("chaos: HTTP 429", retry_after=0.02, broker=self.name)
        if kind == "slow":
            await trio.sleep(self.plan.slow_s())
        order = await self.inner.submit(request)
        if kind == "lose_reply":
            raise BrokerUnavailable("chaos: reply lost after the order was applied")
        if kind == "actor_crash":
            raise RuntimeError("chaos: broker actor crashed after the order was applied")
        return order

    async def cancel(self, order_id: str) -> Order:
        await self._query_fault("cancel")
        return await self.inner.cancel(order_id)

    async def get_order(self, order_id: str) -> Order:
        await self._query_fault("lookup")
        return await self.inner.get_order(order_id)

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        await self._query_fault("lookup")
        return await self.inner.get_order_by_client_id(client_order_id)

    async def open_orders(self) -> list[Order]:
        await self._query_fault("open_orders")
        return await self.inner.open_orders()

    async def positions(self) -> list[Position]:
        await self._query_fault("positions")
        return await self.inner.positions()

    async def account(self) -> Account:
        return await self.inner.account()

    async def stream_updates(
        self, sink: UpdateSink, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.inner.stream_updates, sink)
            task_status.started()
            if self.plan.stream_drop_every_s > 0:
                await trio.sleep(self.plan.rng.expovariate(1 / self.plan.stream_drop_every_s))
                self.plan.note("stream_drop", "stream")
                raise BrokerUnavailable("chaos: update stream dropped", broker=self.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--socket", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fault-rate", type=float, default=0.05, help="share of broker calls broken")
    p.add_argument("--stream-drop-every", type=float, default=20.0, help="mean seconds (0: never)")
    p.add_argument("--faults-log", required=True)
    p.add_argument("--stuck-after", type=float, default=2.0, help="reconcile stuck orders after s")
    args = p.parse_args(argv)
    cfg = load_config(None)
    cfg.ipc.socket = args.socket
    cfg.service.state_dir = args.state_dir
    # Short retry delays: paper runs one order at a time, so a retry's sleep holds the line.
    cfg.retry.delay_ms = 20
    cfg.retry.max_delay_ms = 200
    # A broker over its restart intensity is parked; retry soon so a run can settle.
    cfg.supervision.park_s = 5.0
    # Pull positions often, so a book a race put off is put right (drift, two pulls) soon.
    cfg.positions.sync_interval_s = 2.0
    state = Path(args.state_dir)
    configure_logging(json=True, level="info")
    plan = FaultPlan(
        args.seed, args.fault_rate, Path(args.faults_log), stream_drop_every_s=args.stream_drop_every
    )
    settings = PaperSettings(
        starting_cash=Decimal(10) ** 9,
        state_path=str(state / "paper-paper.db"),
        seed=args.seed,
    )

    def make() -> FaultyConnector:
        return FaultyConnector(PaperConnector("paper", settings, now_ns=time.time_ns), plan)

    factories: dict[str, Callable[[], Any]] = {"paper": make}
    policy = ReconcilePolicy(
        settle_grace_s=0.5, stuck_after_s=args.stuck_after, interval_s=args.stuck_after / 2
    )
    service = build_service(
        cfg,
        extra_children=[ipc_child],
        connector_factories=factories,
        rng=random.Random(args.seed),
        reconcile=policy,
    )
    trio.run(run_service, service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
