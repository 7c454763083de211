"""A cost report as one self-contained HTML page: its table and hand-drawn SVG charts.

No script, no font, no link: the page opens in any browser without a network.
Charts (from the report's ``charts``): slippage per broker (a histogram each),
cost per UTC day, time to last fill (a histogram).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from ult_actors.messages import CostCharts, CostReport, Histogram
from ult_actors.report.render import COLUMNS, cells, empty_message

_W, _H, _PAD = 560, 220, 40
#: One colour per broker's slippage chart, then one for cost and one for fill times.
_BROKER_COLOURS = ("#2b6cb0", "#c05621", "#b83280", "#d69e2e", "#4a5568")
_COST_COLOUR, _FILL_TIME_COLOUR = "#6b46c1", "#2f855a"


def write_page(report: CostReport, path: Path) -> None:
    """Write the page for ``report`` (asked ``with_charts``) to ``path``."""
    path.write_text(page(report), encoding="utf-8")


def page(report: CostReport) -> str:
    """The whole page as text."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>ult report</title><style>",
        "body{font-family:sans-serif;margin:2em;color:#1a202c}",
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}",
        "td{text-align:right}td:first-child{text-align:left}",
        "section{display:inline-block;vertical-align:top;margin:1em 1em 0 0}",
        "</style></head><body><h1>Transaction costs</h1>",
    ]
    empty = empty_message(report)
    if empty is not None:
        parts.append(f"<p>{html.escape(empty)}</p>")
    else:
        parts.append(_table(report))
        if report.charts is not None:
            parts.append(_charts(report.charts))
    parts.append("</body></html>\n")
    return "".join(parts)


def _table(report: CostReport) -> str:
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells(row)) + "</tr>"
        for row in report.rows
    )
    return (
        f"<p>{report.total_orders} orders, by {report.query.by}</p>"
        f"<table><tr>{head}</tr>{body}</table>"
    )


def _charts(charts: CostCharts) -> str:
    parts = [
        _histogram(
            f"Slippage at {broker} (bps, positive is a cost)",
            hist,
            _BROKER_COLOURS[i % len(_BROKER_COLOURS)],
        )
        for i, (broker, hist) in enumerate(charts.slippage_bps.items())
    ]
    parts.append(_cost_per_day(charts))
    parts.append(_histogram("Time to last fill (s)", charts.fill_time_s, _FILL_TIME_COLOUR))
    return "".join(parts)


def _section(title: str, svg_body: str) -> str:
    return (
        f"<section><h2>{html.escape(title)}</h2>"
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}'"
        f" viewBox='0 0 {_W} {_H}' role='img' aria-label='{html.escape(title)}'>"
        f"<line x1='{_PAD}' y1='{_H - _PAD}' x2='{_W - 10}' y2='{_H - _PAD}' stroke='#333'/>"
        f"<line x1='{_PAD}' y1='10' x2='{_PAD}' y2='{_H - _PAD}' stroke='#333'/>"
        f"{svg_body}</svg></section>"
    )


def _label(x: float, y: float, text: str, anchor: str = "middle") -> str:
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' font-size='11' text-anchor='{anchor}'>"
        f"{html.escape(text)}</text>"
    )


def _bars(heights: Sequence[float], colour: str) -> str:
    """Bars across the plot, scaled to the tallest (a negative one, a gain, in red)."""
    top = max((abs(h) for h in heights), default=0.0) or 1.0
    span_x = (_W - 10 - _PAD) / max(1, len(heights))
    plot_h = _H - _PAD - 10
    out = []
    for i, h in enumerate(heights):
        bar_h = abs(h) / top * plot_h
        x = _PAD + i * span_x + 1
        out.append(
            f"<rect x='{x:.1f}' y='{_H - _PAD - bar_h:.1f}' width='{max(1.0, span_x - 2):.1f}'"
            f" height='{bar_h:.1f}' fill='{colour if h >= 0 else '#e53e3e'}'/>"
        )
    out.append(_label(_PAD - 4, 20, _short(top), "end"))
    return "".join(out)


def _histogram(title: str, hist: Histogram | None, colour: str) -> str:
    if hist is None:
        return _section(title, _label(_W / 2, _H / 2, "no data"))
    body = _bars([float(n) for n in hist.counts], colour)
    body += _label(_PAD, _H - _PAD + 14, _short(hist.low))
    body += _label(_W - 10, _H - _PAD + 14, _short(hist.high))
    body += _label(_W / 2, _H - 6, f"{sum(hist.counts)} orders")
    return _section(title, body)


def _cost_per_day(charts: CostCharts) -> str:
    title = "Cost per day (shortfall incl. fees)"
    days = list(charts.cost_per_day)
    if not days:
        return _section(title, _label(_W / 2, _H / 2, "no data"))
    body = _bars([float(charts.cost_per_day[d]) for d in days], _COST_COLOUR)
    body += _label(_PAD, _H - _PAD + 14, days[0], "start")
    body += _label(_W - 10, _H - _PAD + 14, days[-1], "end")
    return _section(title, body)


def _short(value: float) -> str:
    return f"{value:.3g}"
