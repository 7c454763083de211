#!/usr/bin/env python3
"""How long ``ult report`` takes on a big journal.

Builds a journal of ``--orders`` filled orders (one fill each, two brokers,
20 symbols, 30 days, arrival prices set) straight into SQLite, starts the
real ``ult serve`` on it and times ``Client.report`` over the socket (what
``ult report`` calls) for each grouping, plus the orders for ``--html``; and
the service's memory before the first report and at its peak. Then, in this
process, the report alone (reading the journal as it computes), so the
socket's share can be told apart.

    python -m bench.report_speed --orders 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import sqlite3
import statistics
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from ult_actors.client import Client
from ult_actors.journal.costs import JournalCostInputs
from ult_actors.journal.schema import migrate
from ult_actors.messages import Fill, Order, ReportGrouping, ReportQuery
from ult_actors.report import build_report
from ult_actors.testing.process import UltProcess, short_dir

_START_NS = 1_780_000_000 * 10**9
_DAY_NS = 86_400 * 10**9
_GROUPINGS: tuple[ReportGrouping, ...] = ("symbol", "broker", "day")


def build_journal(path: Path, orders: int) -> None:
    """A journal file of ``orders`` filled orders, each with its fill."""
    encode = msgspec.msgpack.Encoder().encode
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    order_rows, fill_rows = [], []
    for i in range(orders):
        broker = ("paper", "sim")[i % 2]
        symbol = f"S{i % 20:02d}"
        side = ("buy", "sell")[i % 3 == 0]
        created = _START_NS + (i * 30 * _DAY_NS) // orders
        arrival = Decimal(100 + i % 20)
        price = arrival + Decimal((i % 11) - 3) / 100
        coid = f"bench-{i}"
        order = Order(
            id=f"b-{i}", client_order_id=coid, broker=broker, symbol=symbol, side=side,
            qty=Decimal(10), type="market", time_in_force="day", status="filled",
            filled_qty=Decimal(10), avg_fill_price=price, created_at=created,
            updated_at=created + 10**8, arrival_price=arrival, arrival_source="venue_quote",
        )  # fmt: skip
        fill = Fill(
            fill_id=f"f-{i}", order_id=f"b-{i}", client_order_id=coid, broker=broker,
            symbol=symbol, side=side, qty=Decimal(10), price=price,
            commission=Decimal("0.05"), ts=created + (i % 50) * 10**7,
        )  # fmt: skip
        order_rows.append(
            (coid, order.id, broker, "filled", "definitive", created, i + 1, encode(order), i + 1)
        )
        fill_rows.append((coid, symbol, fill.ts, encode(fill)))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO orders (client_order_id, order_id, broker, status, outcome, updated_at,"
        " seq, body, first_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        order_rows,
    )
    conn.executemany(
        "INSERT INTO fills (client_order_id, symbol, ts, body) VALUES (?, ?, ?, ?)", fill_rows
    )
    conn.execute("COMMIT")
    conn.close()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Memory of process ``pid`` in MB: the most it has held (``VmHWM``), or what it
    holds now (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _timed(fn: Any, repeat: int, pid: int | None = None) -> tuple[float, float, Any]:
    """The medians of ``repeat`` runs of ``fn()``: wall seconds and CPU seconds (of
    ``pid``, else of this process); and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        cpu = _cpu_s(pid) if pid is not None else time.process_time()
        started = time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - started)
        cpus.append((_cpu_s(pid) if pid is not None else time.process_time()) - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def client_report(client: Client, **query: Any) -> Any:
    """``client.report(**query)``: the call ``ult report`` makes."""
    return client.report(**query)


def run(orders: int, repeat: int) -> dict[str, Any]:
    """Build, serve, time; the figures as a dict."""
    result: dict[str, Any] = {"orders": orders, "repeat": repeat}
    with short_dir("ult-rs") as home:
        state = home / "state"
        state.mkdir()
        started = time.perf_counter()
        build_journal(state / "journal.db", orders)
        result["build_s"] = round(time.perf_counter() - started, 2)
        with UltProcess.serve(home, state_dir=state) as service:
            service.start(timeout=120)
            assert service.socket is not None
            assert service.proc is not None
            pid = service.proc.pid
            # The last 7 of the 30 days: few enough orders to list one by one.
            week = dt.datetime.fromtimestamp((_START_NS + 23 * _DAY_NS) / 1e9, dt.UTC)
            calls: dict[str, Any] = {
                **{f"by_{by}": functools.partial(client_report, by=by) for by in _GROUPINGS},
                "html_charts": functools.partial(client_report, with_charts=True),
                "by_order_last_week": functools.partial(client_report, by="order", since=week),
            }
            result["service_rss_before_reports_mb"] = _rss_mb(pid, "VmRSS")
            with Client(service.socket, timeout=300) as client:
                for name, call in calls.items():
                    wall, cpu, report = _timed(functools.partial(call, client), repeat, pid)
                    result[f"ult_report_{name}_s"] = round(wall, 3)
                    result[f"ult_report_{name}_server_cpu_s"] = round(cpu, 3)
                    result[f"ult_report_{name}_orders"] = report.total_orders
                    result[f"ult_report_{name}_service_peak_rss_mb"] = _rss_mb(pid)
        query = ReportQuery()
        inputs = JournalCostInputs(state / "journal.db", query)
        wall, cpu, _ = _timed(lambda: build_report(inputs, query), repeat)
        result["in_process_report_cpu_s"] = round(cpu, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=100_000, help="orders in the journal (100000)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each; the median (3)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    result = run(args.orders, args.repeat)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:42} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
