"""A cost report as text for people and as CSV for tools."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from decimal import Decimal

from ult_actors.messages import CostReport, CostRow

#: The columns of a report, in order: a table's headers and a CSV's header row.
COLUMNS = (
    "group", "orders", "filled_qty", "notional", "fees",
    "slippage_bps_p50", "slippage_bps_p90", "shortfall", "fill_time_p50_s", "fill_time_p90_s",
)  # fmt: skip


def empty_message(report: CostReport) -> str | None:
    """What to say instead of a report that covers no orders; None: it covers some."""
    if report.total_orders:
        return None
    return "no orders in the journal match this report (filters: " + _filters(report) + ")"


def cells(row: CostRow) -> list[str]:
    """One row as text: money to cents, basis points to one decimal, times in seconds."""
    return [
        row.key,
        str(row.orders),
        _plain(row.filled_qty),
        _cents(row.notional),
        _cents(row.fees),
        _number(row.slippage_bps_p50, 1),
        _number(row.slippage_bps_p90, 1),
        _cents(row.shortfall),
        _number(row.fill_time_p50_s, 3),
        _number(row.fill_time_p90_s, 3),
    ]


def to_csv(rows: Sequence[CostRow]) -> str:
    """The rows as CSV at full precision, a header row first; empty cells for none."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.key,
                row.orders,
                _plain(row.filled_qty),
                _plain(row.notional),
                _plain(row.fees),
                _raw(row.slippage_bps_p50),
                _raw(row.slippage_bps_p90),
                _plain(row.shortfall),
                _raw(row.fill_time_p50_s),
                _raw(row.fill_time_p90_s),
            ]
        )
    return out.getvalue()


def _filters(report: CostReport) -> str:
    q = report.query
    named = {"broker": q.broker, "symbol": q.symbol, "since": _moment(q.since_ns),
             "until": _moment(q.until_ns)}  # fmt: skip
    given = [f"{k}={v}" for k, v in named.items() if v is not None]
    if q.since_ns is not None and q.until_ns is not None and q.since_ns >= q.until_ns:
        given.append("since is not before until")
    return ", ".join(given) or "none"


def _moment(ns: int | None) -> str | None:
    """UTC nanoseconds as an ISO time people read; the raw count where datetime cannot go."""
    if ns is None:
        return None
    try:
        return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{ns} ns"


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _cents(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")), "f")


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _raw(value: float | None) -> str:
    return "" if value is None else repr(value)
