"""One bare durable commit: what a single fsync'd write costs on this disk, right now.

A SQLite file in WAL mode with ``synchronous = FULL`` (as the journal's
``"full"`` setting opens it), one small row inserted and committed per
sample, nothing else: no service, no threads but this one. The goals table
subtracts its p50 from ``synchronous = "full"``'s sequential p50, so the
figure that is left is what ult adds above the one fsync it must pay. It
runs in the same sitting as the service it is compared with, in a directory
on the same file system as the service's journal, because a commit's cost
moves with the disk's load.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import Budget, latency_summary, short_tempdir

#: Commits made before timing starts (a fresh file's first ones also grow it).
WARM_UP = 20


def commit_samples(path: Path, budget: Budget) -> list[int]:
    """Nanoseconds of each ``INSERT`` + ``COMMIT`` of one small row into a fresh WAL file."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        row = b"x" * 200  # about one journaled order
        for _ in range(WARM_UP):
            conn.execute("INSERT INTO t (body) VALUES (?)", (row,))
        samples: list[int] = []
        clock = time.perf_counter_ns
        stop_at = clock() + int(budget.seconds * 1e9)
        for _ in range(budget.count):
            t0 = clock()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (body) VALUES (?)", (row,))
            conn.execute("COMMIT")
            t1 = clock()
            samples.append(t1 - t0)
            if t1 > stop_at:
                break
        return samples
    finally:
        conn.close()


async def measure(budget: Budget) -> dict[str, Any]:
    """p50/p99 of a bare WAL commit with ``synchronous = FULL``, in a fresh file under /tmp."""
    with short_tempdir("bc-") as tmp:
        samples = await trio.to_thread.run_sync(commit_samples, tmp / "commit.db", budget)
    return {
        **latency_summary(samples),
        "setup": "SQLite WAL, synchronous=FULL, one 200-byte row per INSERT+COMMIT, fresh file",
    }
