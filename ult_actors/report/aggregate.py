"""A cost report: the orders a query covers, their costs, and those by group.

Computed in one pass over the journal, an order at a time: what a group
keeps is its sums and the samples its percentiles need (two floats an
order), so a report's memory grows with the orders it lists, not with the
journal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal

from ult_actors.errors import BadRequest
from ult_actors.messages import CostReport, CostRow, Order, OrderCost, ReportQuery
from ult_actors.report.charts import ChartData
from ult_actors.report.costs import order_cost, utc_day
from ult_actors.report.inputs import CostInputs

_ZERO = Decimal(0)
#: The most orders one report lists one by one (``by="order"``, ``with_orders``): each
#: takes about 200 bytes of the reply, which must stay well inside a connection's limit.
MAX_LISTED_ORDERS = 50_000


def build_report(inputs: CostInputs, query: ReportQuery) -> CostReport:
    """The report ``query`` asks for, from a journal's orders and fills.

    ``inputs`` may hold more orders than the query covers (they are filtered
    here). Blocking and CPU-bound for a big journal: run it off the trio thread.
    """
    listed = query.by == "order" or query.with_orders
    key = _GROUP_KEYS[query.by]
    groups: dict[str, _Group] = {}
    charts = ChartData() if query.with_charts else None
    kept: list[OrderCost] = []
    total = 0
    for order, fills in inputs.orders():
        if not _covers(query, order):
            continue
        cost = order_cost(order, fills, inputs.last_trade)
        total += 1
        group = groups.get(name := key(cost))
        if group is None:
            group = groups[name] = _Group()
        group.add(cost)
        if charts is not None:
            charts.add(cost)
        if listed and total <= MAX_LISTED_ORDERS:
            kept.append(cost)
    if listed and total > MAX_LISTED_ORDERS:
        raise BadRequest(
            f"the report covers {total} orders, too many to list one by one (at most"
            f" {MAX_LISTED_ORDERS}): narrow it (since, until, broker, symbol) or group it"
            " by symbol, broker or day"
        )
    kept.sort(key=lambda c: (c.created_at, c.client_order_id))
    return CostReport(
        query=query,
        rows=[group.row(name) for name, group in sorted(groups.items())],
        orders=kept if query.with_orders else [],
        total_orders=total,
        charts=charts.charts() if charts is not None else None,
    )


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` 0.5: the median); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _covers(query: ReportQuery, order: Order) -> bool:
    if query.since_ns is not None and order.created_at < query.since_ns:
        return False
    if query.until_ns is not None and order.created_at >= query.until_ns:
        return False
    if query.broker is not None and order.broker != query.broker:
        return False
    return query.symbol is None or order.symbol == query.symbol


def _day(cost: OrderCost) -> str:
    return utc_day(cost.created_at)


_GROUP_KEYS: dict[str, Callable[[OrderCost], str]] = {
    "order": lambda c: c.client_order_id,
    "symbol": lambda c: c.symbol,
    "broker": lambda c: c.broker,
    "day": _day,
}


class _Group:
    """One row's running sums, and the samples of its percentiles."""

    __slots__ = ("fees", "fill_times", "filled", "notional", "orders", "shortfall", "slippage")

    def __init__(self) -> None:
        self.orders = 0
        self.filled = self.notional = self.fees = self.shortfall = _ZERO
        self.slippage: list[float] = []
        self.fill_times: list[float] = []

    def add(self, c: OrderCost) -> None:
        self.orders += 1
        self.filled += c.filled_qty
        self.notional += c.notional
        self.fees += c.fees
        if c.shortfall is not None:
            self.shortfall += c.shortfall
        if c.slippage_bps is not None:
            self.slippage.append(c.slippage_bps)
        if c.last_fill_s is not None:
            self.fill_times.append(c.last_fill_s)

    def row(self, key: str) -> CostRow:
        return CostRow(
            key=key,
            orders=self.orders,
            filled_qty=self.filled,
            notional=self.notional,
            fees=self.fees,
            slippage_bps_p50=percentile(self.slippage, 0.5),
            slippage_bps_p90=percentile(self.slippage, 0.9),
            shortfall=self.shortfall,
            fill_time_p50_s=percentile(self.fill_times, 0.5),
            fill_time_p90_s=percentile(self.fill_times, 0.9),
        )
