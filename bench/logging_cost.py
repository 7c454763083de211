#!/usr/bin/env python3
"""What one log line costs the event loop: handed over to the writer thread vs rendered inline.

Logs ``--lines`` lines shaped like the IPC server's per-order "request" line
from a trio task, into a file, in rounds that take turns (so load from other
processes falls on every variant alike), and prints the median per line of:

- the calling (trio) thread's CPU (``time.thread_time``): what the loop pays;
- the whole process's CPU until every line is in the file (writer thread included).

Variants: the service's setup (records handed to the writer thread); the
request line's own path (``info_line``: its parts handed over, no structlog
layers on the loop); the same
chain rendered and written inline by the caller (the writer after ``close``);
the setup before the writer thread (structlog's ``JSONRenderer`` to a
``PrintLogger``, inline); and a debug call at info level (filtered out).

    python -m bench.logging_cost --lines 20000 --rounds 5

With ``--serve`` it measures the service instead: ``ult serve`` (the ``ult``
section's config) with the log at info, then at warning (no line an order),
in turns; each round a sequential run and a window-128 run, and for each the
p50 and the server's CPU per order by thread (``/proc/<pid>/task``): the trio
thread, the log writer, the other threads. The difference between the two
levels bounds what the log line costs an order.

    python -m bench.logging_cost --serve --orders 3000 --window-orders 12000 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import structlog
import trio

from bench.common import Budget, short_tempdir
from bench.ult import pipelined, sequential, start_service, write_config
from ult_actors.logsetup import configure_logging, info_line, redact_secrets

#: One variant: set logging up on a stream; return a logger and what to call when done.
Setup = Callable[[TextIO, int], tuple[Any, Callable[[], None]]]


def _handed_over(out: TextIO, lines: int) -> tuple[Any, Callable[[], None]]:
    writer = configure_logging(json=True, level="info", stream=out, capacity=lines)
    return structlog.get_logger().bind(actor="ipc", conn=7), writer.close


class _InfoLine:
    """``info(event, **fields)`` through ``info_line``, as the IPC request line logs."""

    def __init__(self, log: Any) -> None:
        self._emit = info_line(log)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(event, fields)


def _info_line(out: TextIO, lines: int) -> tuple[Any, Callable[[], None]]:
    log, close = _handed_over(out, lines)
    return _InfoLine(log), close


def _inline(out: TextIO, lines: int) -> tuple[Any, Callable[[], None]]:
    writer = configure_logging(json=True, level="info", stream=out)
    writer.close()  # from now on it renders and writes in the caller's thread
    return structlog.get_logger().bind(actor="ipc", conn=7), lambda: None


def _structlog_inline(out: TextIO, lines: int) -> tuple[Any, Callable[[], None]]:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger().bind(actor="ipc", conn=7), lambda: None


VARIANTS: dict[str, Setup] = {
    "handed over to the writer thread": _handed_over,
    "info_line: parts handed over": _info_line,
    "rendered + written inline, same chain": _inline,
    "before: structlog JSONRenderer inline": _structlog_inline,
}


def _log_requests(log: Any, lines: int, *, debug: bool = False) -> None:
    emit = log.debug if debug else log.info
    for n in range(lines):
        emit(
            "request",
            kind="Submit",
            request_id=n,
            client_order_id=f"bench-{n}",
            symbol="AAPL",
            side="buy",
            qty="1",
            type="market",
            broker="paper",
        )


def _one_round(setup: Setup, lines: int, path: Path, *, debug: bool = False) -> tuple[float, float]:
    """(loop µs/line, process µs/line) of one variant."""
    with path.open("w") as out:
        log, finish = setup(out, lines)
        result: list[float] = []

        async def loop() -> None:
            process0, thread0 = time.process_time(), time.thread_time()
            _log_requests(log, lines, debug=debug)
            result.append(time.thread_time() - thread0)
            finish()  # the writer's share: every line in the file
            result.append(time.process_time() - process0)

        trio.run(loop)
    structlog.reset_defaults()
    loop_s, process_s = result
    return loop_s / lines * 1e6, process_s / lines * 1e6


def measure(lines: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median (loop µs/line, process µs/line) per variant, rounds interleaved."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    samples["debug call at info level (filtered)"] = []
    with tempfile.TemporaryDirectory(prefix="logcost-") as tmp:
        path = Path(tmp) / "service.log"
        for _ in range(rounds):
            for name, setup in VARIANTS.items():
                samples[name].append(_one_round(setup, lines, path))
            samples["debug call at info level (filtered)"].append(
                _one_round(_handed_over, lines, path, debug=True)
            )
    return {
        name: (
            statistics.median(s[0] for s in rows),
            statistics.median(s[1] for s in rows),
        )
        for name, rows in samples.items()
    }


_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of ``pid``, by tid; the key carries the
    thread's role: ``trio`` (the main thread), ``log-writer``, or ``other``."""
    spent: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        role = "trio" if tid == str(pid) else "log-writer" if name == "log-writer" else "other"
        spent[f"{role}:{tid}"] = (int(stat[11]) + int(stat[12])) * _TICK_S
    return spent


def _per_order_by_role(
    before: dict[str, float], after: dict[str, float], orders: int
) -> dict[str, float]:
    """CPU µs per order of each role between two readings, and their total."""
    by_role = {"trio": 0.0, "log-writer": 0.0, "other": 0.0}
    for key, seconds in after.items():
        by_role[key.split(":")[0]] += seconds - before.get(key, 0.0)
    by_role["total"] = sum(by_role.values())
    return {role: seconds / orders * 1e6 for role, seconds in by_role.items()}


async def _serve_round(level: str, orders: int, window_orders: int) -> dict[str, float]:
    """One service at ``level``: sequential p50, window-128 orders/s, CPU per order by role."""
    with short_tempdir("lc-") as tmp:
        (tmp / "run").mkdir(mode=0o700)
        service = await start_service(tmp, write_config(tmp), env={"ULT_LOG_LEVEL": level})
        try:
            await sequential(service.socket, Budget(300, 10.0))  # warm-up
            t0 = _threads_cpu(service.pid)
            seq = await sequential(service.socket, Budget(orders, 120.0))
            t1 = _threads_cpu(service.pid)
            window = await pipelined(
                service.socket, Budget(window_orders, 120.0), clients=1, window=128
            )
            t2 = _threads_cpu(service.pid)
        finally:
            await service.stop()
    row = {"seq p50 µs": seq["p50_us"], "window orders/s": window["per_s"]}
    for mode, cpu in (
        ("seq", _per_order_by_role(t0, t1, seq["n"])),
        ("window", _per_order_by_role(t1, t2, window["n"])),
    ):
        row.update({f"{mode} {role} µs": us for role, us in cpu.items()})
    return row


def measure_serve(
    orders: int, window_orders: int, rounds: int, levels: list[str]
) -> dict[str, dict[str, float]]:
    """Median of each figure per log level, the levels taking turns."""
    rows: dict[str, list[dict[str, float]]] = {level: [] for level in levels}
    for _ in range(rounds):
        for level in levels:
            rows[level].append(trio.run(_serve_round, level, orders, window_orders))
    return {
        level: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for level, runs in rows.items()
    }


def _print_serve(figures: dict[str, dict[str, float]], rounds: int) -> None:
    print(f"ult serve, median of {rounds} rounds; CPU per order by thread")
    levels = list(figures)
    print(f"  {'':22}" + "".join(f"{'log ' + level:>14}" for level in levels))
    for key in figures[levels[0]]:
        print(f"  {key:22}" + "".join(f"{figures[level][key]:14.1f}" for level in levels))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.logging_cost", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--lines", type=int, default=20_000, help="lines per round (default 20000)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per variant (default 5)")
    p.add_argument("--serve", action="store_true", help="measure ult serve, log at info vs warning")
    p.add_argument("--orders", type=int, default=3000, help="--serve: sequential orders a round")
    p.add_argument(
        "--window-orders", type=int, default=12_000, help="--serve: window-128 orders a round"
    )
    p.add_argument(
        "--levels",
        default="info,warning",
        help="--serve: log levels, in turns (default info,warning)",
    )
    args = p.parse_args(argv)
    if args.serve:
        levels = args.levels.split(",")
        _print_serve(
            measure_serve(args.orders, args.window_orders, args.rounds, levels), args.rounds
        )
        return 0
    figures = measure(args.lines, args.rounds)
    print(f"per log line, median of {args.rounds} rounds of {args.lines} lines")
    print(f"  {'':40} {'loop µs':>8} {'process µs':>11}")
    for name, (loop_us, process_us) in figures.items():
        print(f"  {name:40} {loop_us:8.2f} {process_us:11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
