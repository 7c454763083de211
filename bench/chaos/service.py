#!/usr/bin/env python3
"""The service ``python -m bench.chaos`` runs and kills: the real tree, its broker behind faults.

It is ``ult serve`` (the same ``build_service``, IPC server, journal and
supervision) except for its paper broker. Paper fills at most
``DISPLAYED_SIZE`` a tick, so larger orders fill in parts (a replace may land
after a partial fill, an emulated child is released in pieces), and paper
carries brackets itself but leaves OCOs and OTOs to the service
(``EmulatingPaper``), the one venue where emulated lists meet partial fills.
The paper connector is wrapped in
``ult_actors.testing.connector.FaultyConnector``, which breaks calls the way a
remote broker does (dropped connections, 503s, 429s, slow or lost replies,
actor crashes after the order was applied, update streams cut), drawn from a
``random.Random`` seeded by ``--seed``. Each fault is appended to
``--faults-log`` as one JSON line.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import trio

from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.cli.serve import ipc_child, run_service
from ult_actors.config import load_config
from ult_actors.logsetup import configure_logging
from ult_actors.messages import Contingency
from ult_actors.service import build_service
from ult_actors.testing.connector import FaultPlan, FaultyConnector

#: Paper's most per match: an order for more fills over several ticks.
DISPLAYED_SIZE = Decimal(2)
TICK_S = 0.25


class EmulatingPaper(PaperConnector):
    """The paper connector, its OCOs and OTOs held by the service instead of the venue."""

    native_contingencies: frozenset[Contingency] = frozenset({"bracket"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--socket", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fault-rate", type=float, default=0.05, help="share of broker calls broken")
    p.add_argument("--stream-drop-every", type=float, default=20.0, help="mean seconds (0: never)")
    p.add_argument("--faults-log", required=True)
    p.add_argument("--stuck-after", type=float, default=2.0, help="reconcile stuck orders after s")
    p.add_argument(
        "--stale-after", type=float, default=2.0, help="Alpaca/OANDA/IB streams silent this long: lost"
    )
    p.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    args = p.parse_args(argv)
    cfg = load_config(None)
    cfg.journal.synchronous = args.synchronous
    cfg.ipc.socket = args.socket
    cfg.service.state_dir = args.state_dir
    # Short retry delays: paper runs one order at a time, so a retry's sleep holds the line.
    cfg.retry.delay_ms = 20
    cfg.retry.max_delay_ms = 200
    # A broker over its restart intensity is parked; retry soon so a run can settle.
    cfg.supervision.park_s = 5.0
    # Pull positions often, so a book a race put off is put right (drift, two pulls) soon.
    cfg.positions.sync_interval_s = 2.0
    # Streams the simulators silence are found within the run, not after 15-30 s.
    for entry in cfg.brokers:
        if entry.kind in ("alpaca", "oanda", "ib"):
            entry.settings = msgspec.structs.replace(entry.settings, stale_after_s=args.stale_after)
        if entry.kind == "alpaca":
            entry.settings = msgspec.structs.replace(
                entry.settings, stream_ping_interval_s=args.stale_after / 4
            )
    state = Path(args.state_dir)
    configure_logging(json=True, level="info")
    plan = FaultPlan(
        args.seed, args.fault_rate, Path(args.faults_log), stream_drop_every_s=args.stream_drop_every
    )
    settings = PaperSettings(
        starting_cash=Decimal(10) ** 9,
        state_path=str(state / "paper-paper.db"),
        seed=args.seed,
        displayed_size=DISPLAYED_SIZE,
        tick_interval_s=TICK_S,
    )

    def make() -> FaultyConnector:
        return FaultyConnector(EmulatingPaper("paper", settings, now_ns=time.time_ns), plan)

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
