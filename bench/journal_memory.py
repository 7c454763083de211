#!/usr/bin/env python3
"""The SQLite journal's memory per order beyond its window, and the cost of a lookup that misses memory.

Records ``--orders`` orders (each submitted, then filled: final) into a fresh
journal in a temp directory whose in-memory window holds ``--window`` orders,
tracing Python allocations (``tracemalloc``). Prints the traced memory after
the window filled and at the end, the growth per order beyond the window, and
the latency of ``get()`` for an old order (out of memory: read from the file)
and for an id never seen (the idempotency check of a new order).

    python -m bench.journal_memory --orders 100000 --window 10000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import trio

from bench.journal import _order  # the same order the throughput benchmark writes
from ult_actors.journal.sqlite import SqliteStore, open_sqlite_store


async def _write(store: SqliteStore, start: int, stop: int, writers: int) -> None:
    async def worker(k: int) -> None:
        for i in range(start + k, stop, writers):
            order = _order(i)
            await store.record(order, event="submit")
            filled = msgspec.structs.replace(
                order, status="filled", filled_qty=order.qty, outcome="definitive"
            )
            await store.record(filled)

    async with trio.open_nursery() as nursery:
        for k in range(writers):
            nursery.start_soon(worker, k)


async def _lookups(store: SqliteStore, ids: list[str]) -> dict[str, float]:
    times = []
    for coid in ids:
        t = time.perf_counter()
        await store.get(coid)
        times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    return {
        "p50_us": round(statistics.median(times), 1),
        "p99_us": round(times[int(len(times) * 0.99) - 1], 1),
    }


async def _run(
    path: Path, orders: int, window: int, writers: int, lookups: int
) -> dict[str, Any]:
    tracemalloc.start()
    async with open_sqlite_store(path, cache_size=window, synchronous="normal") as store:
        await _write(store, 0, window, writers)
        at_window = tracemalloc.get_traced_memory()[0]
        await _write(store, window, orders, writers)
        at_end = tracemalloc.get_traced_memory()[0]
        rng = random.Random(7)
        old = [f"bench-{rng.randrange(orders - window)}" for _ in range(lookups)]
        new = [f"never-{i}" for i in range(lookups)]
        old_get = await _lookups(store, old)
        new_get = await _lookups(store, new)
        found = [await store.get(coid) for coid in old[:10]]
    tracemalloc.stop()
    assert all(o is not None and o.status == "filled" for o in found)
    return {
        "orders": orders,
        "window": window,
        "traced_at_window_mb": round(at_window / 2**20, 2),
        "traced_at_end_mb": round(at_end / 2**20, 2),
        "bytes_per_order_beyond_window": round((at_end - at_window) / (orders - window), 1),
        "get_old_order_from_file": old_get,
        "get_unknown_id": new_get,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=100_000, help="orders recorded (100000)")
    p.add_argument("--window", type=int, default=10_000, help="orders kept in memory (10000)")
    p.add_argument("--writers", type=int, default=64, help="concurrent recording tasks (64)")
    p.add_argument("--lookups", type=int, default=2000, help="timed lookups of each kind (2000)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    if args.orders <= args.window:
        p.error("--orders must exceed --window")
    with tempfile.TemporaryDirectory(prefix="ult-jmem-") as tmp:
        result = trio.run(
            _run, Path(tmp) / "journal.db", args.orders, args.window, args.writers, args.lookups
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
