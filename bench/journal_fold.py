#!/usr/bin/env python3
"""Instructions per order of the journal's fold alone: the change log's rows into the SQLite file.

The fold runs on its own thread every ``fold_interval_s`` (20 ms), so how many
orders one transaction holds depends on the order rate: ~60-100 at the rates
``scripts/bench`` reaches, one or two under valgrind (which slows the loop ~50x),
and all of them in ``bench.journal_calls`` (one fold at close). This calls
``SqliteStore._fold`` directly on a real file, ``--per-fold`` orders a
transaction, each order as the service records it (the submit, the filled
update, one fill): two runs under ``valgrind --tool=cachegrind``, one with
``--orders`` more orders than the other; the difference over ``--orders``
counts the fold's work per order (building the rows included, as the fold's
thread encodes the brokers' news), start-up cancelled out. ``--news``: each order
as the service hands it to the fold, the submit logged (a ``LogRow``), the filled
update and the fill as the brokers' news (a ``Record``, a ``Fill``), encoded by the
fold (what a served order's fold does).

    python -m bench.journal_fold                     # 100 orders a fold
    python -m bench.journal_fold --per-fold 10
    python -m bench.journal_fold --news --per-fold 10
    python -m bench.journal_fold --drive 1000 100    # one run, no valgrind
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from bench.instructions import instructions_of
from ult_actors.journal.changelog import FillRow, LogRow, Record, fill_row, log_row
from ult_actors.journal.sqlite import SqliteStore
from ult_actors.messages import Fill, Order


def _rows(
    first: int, count: int, news: bool = False
) -> tuple[list[LogRow | Record], list[FillRow | Fill]]:
    """The log rows and fill rows of orders ``first`` .. ``first + count - 1`` (``news``:
    the filled update and the fill as handed over, not encoded)."""
    rows: list[LogRow | Record] = []
    fills: list[FillRow | Fill] = []
    for i in range(first, first + count):
        now = 1_700_000_000_000_000_000 + i
        submitted = Order(
            id="", client_order_id=f"n-{i}", broker="paper", symbol="AAPL", side="buy",
            qty=Decimal(1), type="market", time_in_force="day", status="pending_new",
            created_at=now, updated_at=now, outcome="unknown",
        )  # fmt: skip
        filled = msgspec.structs.replace(
            submitted, id=str(i), status="filled", filled_qty=Decimal(1),
            avg_fill_price=Decimal("187.25"), outcome="definitive",
        )  # fmt: skip
        rows.append(log_row(2 * i + 1, "submit", now, submitted))
        update = (2 * i + 2, "update", now, filled)
        rows.append(update if news else log_row(*update))
        execution = Fill(
            fill_id=f"f-{i}", order_id=str(i), client_order_id=f"n-{i}", broker="paper",
            symbol="AAPL", side="buy", qty=Decimal(1), price=Decimal("187.25"), ts=now,
        )  # fmt: skip
        fills.append(execution if news else fill_row(execution))
    return rows, fills


def drive(orders: int, per_fold: int, news: bool = False) -> None:
    """Fold ``orders`` orders into a fresh journal file, ``per_fold`` a transaction."""
    with tempfile.TemporaryDirectory(prefix="ult-jfold") as folder:
        store = SqliteStore(Path(folder) / "journal.db")
        store._open_sync()
        try:
            for first in range(0, orders, per_fold):
                rows, fills = _rows(first, min(per_fold, orders - first), news)
                store._fold(rows, fills, False)
        finally:
            store._close_sync()


def measure(orders: int, base: int, per_fold: int, news: bool = False) -> dict[str, Any]:
    """Instructions per order of the fold, ``per_fold`` orders a transaction."""
    if shutil.which("valgrind") is None:
        return {"status": "unavailable: valgrind is not installed"}
    extra = ["--news"] if news else []
    runs = [
        instructions_of(["-m", "bench.journal_fold", "--drive", str(n), str(per_fold), *extra])
        for n in (base, base + orders)
    ]
    return {
        "orders": orders,
        "per_fold": per_fold,
        "news": news,
        "instructions per order": round((runs[1] - runs[0]) / orders),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders measured (2000)")
    parser.add_argument("--base", type=int, default=1000, help="orders of the shorter run")
    parser.add_argument("--per-fold", type=int, default=100, help="orders a transaction (100)")
    parser.add_argument(
        "--drive", nargs=2, type=int, metavar=("ORDERS", "PER_FOLD"),
        help="one run, no valgrind",
    )  # fmt: skip
    parser.add_argument(
        "--news", action="store_true",
        help="the filled update and the fill handed over as news, as the service does",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.drive:
        drive(*args.drive, news=args.news)
        return 0
    print(json.dumps(measure(args.orders, args.base, args.per_fold, args.news), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
