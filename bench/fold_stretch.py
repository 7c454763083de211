#!/usr/bin/env python3
"""How long the journal's fold thread runs Python (holding the GIL) between its SQLite statements.

The trio thread that wants the GIL while the fold's thread holds it waits for
the fold's next blocking call: an SQLite statement's step (the sqlite3 module
lets go of the GIL around it) or its wait for more work. So the fold's
*stretches* (its CPU from the end of one statement's step to the start of
the next one's, the binds of the next included) bound what a request can wait
for it, and their sum is how often one has to.

This runs the in-process service (``bench.instructions``' drive, durable
setup) with the journal's connections made by a subclass of
``sqlite3.Connection`` that timestamps, on the ``journal-fold`` thread only,
each statement's start (SQLite's trace callback, which fires inside the step,
after the binds) and end (``execute`` returning), in that thread's CPU time
(``time.thread_time_ns``: what it ran, not what it waited). Start-up (the
open's statements, on another thread) is not counted.

    python -m bench.fold_stretch                          # 3000 sequential orders
    python -m bench.fold_stretch --mode window --orders 5000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import threading
import time
from typing import Any

import trio

from bench.instructions import drive

_FOLD_THREAD = "journal-fold"


class _Stretches:
    """The fold thread's CPU between statements (ns), and its statements."""

    def __init__(self) -> None:
        self.stretches: list[int] = []
        self.statements = 0
        self._ended: int | None = None
        self.on = False

    def started(self) -> None:
        if self.on and threading.current_thread().name.startswith(_FOLD_THREAD):
            now = time.thread_time_ns()
            if self._ended is not None:
                self.stretches.append(now - self._ended)
            self.statements += 1

    def ended(self) -> None:
        if threading.current_thread().name.startswith(_FOLD_THREAD):
            self._ended = time.thread_time_ns()


def _timed_connection(stretches: _Stretches) -> type[sqlite3.Connection]:
    class TimedConnection(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.set_trace_callback(lambda _sql: stretches.started())

        def execute(self, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            try:
                return super().execute(*args)
            finally:
                stretches.ended()

    return TimedConnection


def measure(mode: str, warmup: int, orders: int) -> dict[str, Any]:
    """The fold thread's stretches while ``orders`` orders run after ``warmup``."""
    stretches = _Stretches()
    factory = _timed_connection(stretches)
    connect = sqlite3.connect

    def timed_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(*args, factory=factory, **kwargs)

    class Switch(trio.abc.Instrument):
        """Counts from the end of the warm-up (``drive`` sets ``on``)."""

        @property
        def on(self) -> bool:
            return stretches.on

        @on.setter
        def on(self, value: bool) -> None:
            stretches.on = value

    sqlite3.connect = timed_connect  # type: ignore[assignment]
    try:
        answered = trio.run(drive, mode, warmup, orders, "durable", Switch())
    finally:
        sqlite3.connect = connect  # type: ignore[assignment]
    us = sorted(ns / 1000 for ns in stretches.stretches)

    def at(q: float) -> float:
        return round(us[min(len(us) - 1, int(q * len(us)))], 1) if us else 0.0

    return {
        "mode": mode,
        "orders": answered - warmup,
        "statements an order": round(stretches.statements / orders, 3),
        "stretch us: median": round(statistics.median(us), 1) if us else 0.0,
        "p90": at(0.90),
        "p99": at(0.99),
        "max": round(us[-1], 1) if us else 0.0,
        "stretches' CPU an order, us": round(sum(us) / orders, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("seq", "window"), default="seq")
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.mode, args.warmup, args.orders), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
