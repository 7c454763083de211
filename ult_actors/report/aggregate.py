"""A cost report: the orders a query covers, their costs, and those by group."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal

from ult_actors.errors import BadRequest
from ult_actors.messages import CostReport, CostRow, Fill, Order, OrderCost, ReportQuery
from ult_actors.report.charts import build_charts
from ult_actors.report.costs import LastTrades, order_cost, utc_day

_ZERO = Decimal(0)
#: The most orders one report lists one by one (``by="order"``, ``with_orders``): each
#: takes about 200 bytes of the reply, which must stay well inside a connection's limit.
MAX_LISTED_ORDERS = 50_000


def build_report(orders: Sequence[Order], fills: Sequence[Fill], query: ReportQuery) -> CostReport:
    """The report ``query`` asks for, from a journal's orders and fills.

    ``orders`` may hold more than the query covers (they are filtered here);
    ``fills`` should hold every fill of the covered symbols, at any broker.
    Blocking and CPU-bound for a big journal: run it off the trio thread.
    """
    chosen = [o for o in orders if _covers(query, o)]
    by_order: dict[str, list[Fill]] = {}
    for fill in fills:
        by_order.setdefault(fill.client_order_id, []).append(fill)
    last_trades = LastTrades(fills)
    costs = [order_cost(o, by_order.get(o.client_order_id, ()), last_trades) for o in chosen]
    listed = query.by == "order" or query.with_orders
    if listed and len(costs) > MAX_LISTED_ORDERS:
        raise BadRequest(
            f"the report covers {len(costs)} orders, too many to list one by one (at most"
            f" {MAX_LISTED_ORDERS}): narrow it (since, until, broker, symbol) or group it"
            " by symbol, broker or day"
        )
    costs.sort(key=lambda c: (c.created_at, c.client_order_id))
    key = _GROUP_KEYS[query.by]
    groups: dict[str, list[OrderCost]] = {}
    for cost in costs:
        groups.setdefault(key(cost), []).append(cost)
    rows = [_row(name, members) for name, members in sorted(groups.items())]
    return CostReport(
        query=query,
        rows=rows,
        orders=costs if query.with_orders else [],
        total_orders=len(costs),
        charts=build_charts(costs) if query.with_charts else None,
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


def _row(key: str, costs: list[OrderCost]) -> CostRow:
    filled = notional = fees = shortfall = _ZERO
    slippage: list[float] = []
    fill_times: list[float] = []
    for c in costs:  # one pass: a group may hold a whole journal
        filled += c.filled_qty
        notional += c.notional
        fees += c.fees
        if c.shortfall is not None:
            shortfall += c.shortfall
        if c.slippage_bps is not None:
            slippage.append(c.slippage_bps)
        if c.last_fill_s is not None:
            fill_times.append(c.last_fill_s)
    return CostRow(
        key=key,
        orders=len(costs),
        filled_qty=filled,
        notional=notional,
        fees=fees,
        slippage_bps_p50=percentile(slippage, 0.5),
        slippage_bps_p90=percentile(slippage, 0.9),
        shortfall=shortfall,
        fill_time_p50_s=percentile(fill_times, 0.5),
        fill_time_p90_s=percentile(fill_times, 0.9),
    )
