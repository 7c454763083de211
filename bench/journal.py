#!/usr/bin/env python3
"""Orders durably recorded per second by the SQLite journal.

Runs ``--writers`` concurrent tasks that each ``record()`` orders (every call
returns only once its batch is appended to the journal's change log, and
fsynced with ``--synchronous full``) into a fresh journal in a temp
directory, and prints orders/s for each combination of group commit (on/off)
and writer thread (one dedicated thread / trio's worker threads: where a
``full`` append and its fsync run; a ``normal`` one runs on the trio thread).
The fold of the log into the SQLite file runs on its own thread meanwhile;
``folds`` counts its transactions.

    python -m bench.journal --orders 20000 --writers 64
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from ult_actors.journal.sqlite import Writer, open_sqlite_store
from ult_actors.messages import Order


def _order(i: int) -> Order:
    return Order(
        id=f"b-{i}",
        client_order_id=f"bench-{i}",
        broker="paper",
        symbol="AAPL",
        side="buy",
        qty=Decimal(10),
        type="limit",
        time_in_force="day",
        status="pending_new",
        limit_price=Decimal("187.25"),
        created_at=time.time_ns(),
        updated_at=time.time_ns(),
        outcome="unknown",
    )


async def _run(
    path: Path, *, orders: int, writers: int, group: bool, writer: Writer, sync: str
) -> dict[str, Any]:
    batch = [_order(i) for i in range(orders)]
    latencies: list[float] = []
    async with open_sqlite_store(
        path, group_commit=group, writer=writer, synchronous=sync  # type: ignore[arg-type]
    ) as store:

        async def worker(k: int) -> None:
            for i in range(k, orders, writers):
                t = time.perf_counter()
                await store.record(batch[i], event="submit")
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for k in range(writers):
                nursery.start_soon(worker, k)
        elapsed = time.perf_counter() - start
        commits = store.commits
    folds = store.folds  # the last fold (at close) not counted
    latencies.sort()
    return {
        "group_commit": group,
        "writer": writer,
        "synchronous": sync,
        "orders": orders,
        "writers": writers,
        "orders_per_s": round(orders / elapsed),
        "commits": commits,
        "orders_per_commit": round(orders / max(1, commits), 1),
        "folds": folds,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=20_000, help="records per run (default 20000)")
    p.add_argument("--writers", type=int, default=64, help="concurrent recording tasks (64)")
    p.add_argument(
        "--no-group-orders",
        type=int,
        default=2_000,
        help="records per run with group commit off, which is slow (default 2000)",
    )
    p.add_argument("--synchronous", choices=["full", "normal"], default="full")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    results = []
    for group in (True, False):
        for writer in ("thread", "to_thread"):
            tmp = Path(tempfile.mkdtemp(prefix="ult-bench-journal-", dir="/tmp"))
            try:
                results.append(
                    trio.run(
                        lambda g=group, w=writer, d=tmp: _run(  # type: ignore[misc]
                            d / "journal.db",
                            orders=args.orders if g else args.no_group_orders,
                            writers=args.writers,
                            group=g,
                            writer=w,
                            sync=args.synchronous,
                        )
                    )
                )
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"{'group commit':<13}{'writer':<11}{'sync':<7}{'orders':>8}{'orders/s':>10}"
        f"{'per commit':>12}{'folds':>7}{'p50 ms':>9}{'p99 ms':>9}"
    )
    for r in results:
        print(
            f"{'on' if r['group_commit'] else 'off':<13}{r['writer']:<11}{r['synchronous']:<7}"
            f"{r['orders']:>8}{r['orders_per_s']:>10}{r['orders_per_commit']:>12}{r['folds']:>7}"
            f"{r['p50_ms']:>9}{r['p99_ms']:>9}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
