#!/usr/bin/env python3
"""Instructions of the trio thread per order for the journal's own calls, apart from the actors.

Drives a journal with the calls the actors make per order (``get``, ``record``
of the submit, a checkpoint, ``get``, ``record_fill``, ``record_soon`` of the
fill's update, a checkpoint as the reply travels back, ``get``), sequentially or
from 128 tasks at once, and counts instructions by thread under ``valgrind
--tool=callgrind --separate-threads=yes``: the trio thread apart from the
journal's own threads (fold, log fsync). Each figure is two runs, one with
``--orders`` more orders than the other, over ``--orders``: start-up and
shut-down cancel out. The fold and the log's fsync wait far longer than a run
(valgrind slows the loop ~50x, so a 20 ms fold would come every few orders
instead of every few hundred): the fold's per-order work is counted once, at
close. ``memory`` (the in-memory journal) is the floor: the SQLite journal's
cost is the difference.

    python -m bench.journal_calls --orders 2000               # memory and sqlite, seq and window
    python -m bench.journal_calls --drive sqlite seq 1000     # one run, no valgrind
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import trio

from bench.common import ROOT, child_env
from ult_actors.journal.memory import MemoryStore
from ult_actors.journal.sqlite import open_sqlite_store
from ult_actors.journal.store import OrderStore
from ult_actors.messages import Fill, Order

WINDOW = 128
STORES = ("memory", "sqlite")
#: Fold and log fsync intervals no run reaches (see the module doc).
_NEVER_S = 1e5


async def _one(store: OrderStore, i: int) -> bool:
    """One order's calls; whether the journal then answers with the order filled."""
    coid = f"c-{i}"
    await store.get(coid)
    now = time.time_ns()
    order = Order(
        id="", client_order_id=coid, broker="paper", symbol="AAPL", side="buy",
        qty=Decimal(10), type="limit", time_in_force="day", status="pending_new",
        limit_price=Decimal("187.25"), created_at=now, updated_at=now, outcome="unknown",
    )  # fmt: skip
    await store.record(order, event="submit")
    await trio.lowlevel.checkpoint()  # the broker's answer comes in a later round
    await store.get(coid)
    fill = Fill(
        fill_id=f"f-{i}", order_id=f"v-{i}", client_order_id=coid, broker="paper",
        symbol="AAPL", side="buy", qty=order.qty, price=Decimal("187.25"), ts=now,
    )  # fmt: skip
    store.record_fill(fill)
    filled = msgspec.structs.replace(
        order, id=f"v-{i}", status="filled", filled_qty=order.qty,
        avg_fill_price=Decimal("187.25"), outcome="definitive",
    )  # fmt: skip
    store.record_soon(filled)
    await trio.lowlevel.checkpoint()  # the reply travels back before the next order
    found = await store.get(coid)
    return found is not None and found.status == "filled"


async def _drive_store(store: OrderStore, mode: str, orders: int) -> int:
    filled = 0

    async def worker(first: int, step: int) -> None:
        nonlocal filled
        for i in range(first, orders, step):
            answered = await _one(store, i)  # awaited first: other tasks add meanwhile
            filled += answered

    if mode == "seq":
        await worker(0, 1)
        return filled
    async with trio.open_nursery() as nursery:
        for first in range(WINDOW):
            nursery.start_soon(worker, first, WINDOW)
    return filled


def drive(kind: str, mode: str, orders: int) -> int:
    """Make ``orders`` orders' journal calls on a fresh ``kind`` journal, ``mode`` seq or
    window; how many orders it then answered as filled."""

    async def main() -> int:
        if kind == "memory":
            return await _drive_store(MemoryStore(), mode, orders)
        with tempfile.TemporaryDirectory(prefix="ult-jcalls") as folder:
            async with open_sqlite_store(
                Path(folder) / "journal.db", fold_interval_s=_NEVER_S, sync_interval_s=_NEVER_S
            ) as store:
                return await _drive_store(store, mode, orders)

    return trio.run(main)


def _by_thread(kind: str, mode: str, orders: int) -> tuple[int, int]:
    """Instructions of one run under callgrind: the main (trio) thread's, the others'."""
    with tempfile.TemporaryDirectory(prefix="ult-jcalls-cg") as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            "valgrind", "--tool=callgrind", "--separate-threads=yes",
            f"--callgrind-out-file={out}", sys.executable, "-m", "bench.journal_calls",
            "--drive", kind, mode, str(orders),
        ]  # fmt: skip
        # A fixed string hash: the id filter's positions and the dicts' probes repeat.
        env = child_env(PYTHONHASHSEED="0")
        subprocess.run(command, capture_output=True, timeout=1800, cwd=ROOT, env=env, check=True)
        main = others = 0
        for part in Path(folder).glob("callgrind.out-*"):
            total = _total(part)
            if part.name.endswith("-01"):
                main = total
            else:
                others += total
        return main, others


def _total(part: Path) -> int:
    for line in part.read_text(errors="replace").splitlines():
        found = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if found:
            return int(found.group(1))
    raise RuntimeError(f"no instruction total in {part}")


def measure(orders: int, base: int) -> dict[str, Any]:
    """Instructions per order by thread, for each journal and mode."""
    if shutil.which("valgrind") is None:
        return {"status": "unavailable: valgrind is not installed"}
    result: dict[str, Any] = {"orders": orders, "base": base}
    for kind in STORES:
        for mode in ("seq", "window"):
            main_a, others_a = _by_thread(kind, mode, base)
            main_b, others_b = _by_thread(kind, mode, base + orders)
            result[f"{kind} {mode}"] = {
                "trio thread": round((main_b - main_a) / orders),
                "other threads": round((others_b - others_a) / orders),
            }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders measured (default 2000)")
    parser.add_argument(
        "--base", type=int, default=1000, help="orders of the shorter run (default 1000)"
    )
    parser.add_argument(
        "--drive", nargs=3, metavar=("STORE", "MODE", "ORDERS"),
        help="one run, no valgrind: STORE memory|sqlite, MODE seq|window",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.drive:
        kind, mode, orders = args.drive
        if kind not in STORES or mode not in ("seq", "window"):
            parser.error("--drive STORE MODE ORDERS: STORE memory|sqlite, MODE seq|window")
        drive(kind, mode, int(orders))
        return 0
    print(json.dumps(measure(args.orders, args.base), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
