"""``ult report``: what the journaled orders cost, as a table, JSON, CSV or an HTML page."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from ult_actors.cli.client import Output, _parser, _run
from ult_actors.cli.exit_codes import EXIT_FAILED, EXIT_OK
from ult_actors.cli.tables import Style, table
from ult_actors.client import Client
from ult_actors.messages import CostRow
from ult_actors.report.html import write_page
from ult_actors.report.render import COLUMNS, cells, empty_message, to_csv


def _moment(text: str) -> dt.datetime:
    """An argparse type: ``2026-12-04`` (midnight UTC) or an ISO time (naive: UTC)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (YYYY-MM-DD) or an ISO time"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def report_main(argv: list[str]) -> int:
    """``ult report [--since D] [--until D] [--broker B] [--symbol S] [--by G]``."""
    p = _parser(
        "report",
        "What the journaled orders cost: fees, slippage against the arrival price (bps,"
        " positive is a cost), implementation shortfall and time to fill, by group.",
    )
    p.add_argument("--since", type=_moment, help="orders created at or after (date or ISO time)")
    p.add_argument("--until", type=_moment, help="orders created before (date or ISO time)")
    p.add_argument("--broker", help="only this broker connection's orders")
    p.add_argument("--symbol", help="only this symbol's orders")
    p.add_argument(
        "--by",
        default="symbol",
        choices=["order", "symbol", "broker", "day"],
        help="one row per order, symbol (default), broker or day",
    )
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.add_argument("--html", metavar="FILE", help="also write a page with charts to FILE")
    args = p.parse_args(argv)

    def run(c: Client, a: argparse.Namespace, out: Output) -> int:
        report = c.report(
            since=a.since,
            until=a.until,
            broker=a.broker,
            symbol=a.symbol,
            by=a.by,
            with_charts=a.html is not None,
        )
        if a.html is not None:
            try:
                write_page(report, Path(a.html))
            except OSError as exc:
                print(f"ult: cannot write {a.html}: {exc.strerror or exc}", file=sys.stderr)
                return EXIT_FAILED
        if out.json:
            out.document(report)
            return EXIT_OK
        empty = empty_message(report)
        if empty is not None:
            out.text(empty)
        elif a.csv:
            out.stream.write(to_csv(report.rows))
        else:
            out.text(_table(report.rows, out.style))
        if a.html is not None and not a.csv:
            out.text(f"wrote {a.html}")
        return EXIT_OK

    return _run(args, run)


def _table(rows: Sequence[CostRow], style: Style) -> str:
    headers = [c.upper().replace("_", " ") for c in COLUMNS]
    return table(headers, [cells(r) for r in rows], style, right=frozenset(range(1, len(COLUMNS))))
