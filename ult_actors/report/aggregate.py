"""A cost report: the orders a query covers, their costs, and those by group."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from decimal import Decimal

from ult_actors.messages import CostReport, CostRow, Fill, Order, OrderCost, ReportQuery
from ult_actors.report.costs import LastTrades, order_cost

_ZERO = Decimal(0)


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
    return dt.datetime.fromtimestamp(cost.created_at / 1e9, dt.UTC).date().isoformat()


_GROUP_KEYS: dict[str, Callable[[OrderCost], str]] = {
    "order": lambda c: c.client_order_id,
    "symbol": lambda c: c.symbol,
    "broker": lambda c: c.broker,
    "day": _day,
}


def _row(key: str, costs: list[OrderCost]) -> CostRow:
    slippage = [c.slippage_bps for c in costs if c.slippage_bps is not None]
    fill_times = [c.last_fill_s for c in costs if c.last_fill_s is not None]
    return CostRow(
        key=key,
        orders=len(costs),
        filled_qty=sum((c.filled_qty for c in costs), _ZERO),
        notional=sum((c.notional for c in costs), _ZERO),
        fees=sum((c.fees for c in costs), _ZERO),
        slippage_bps_p50=percentile(slippage, 0.5),
        slippage_bps_p90=percentile(slippage, 0.9),
        shortfall=sum((c.shortfall for c in costs if c.shortfall is not None), _ZERO),
        fill_time_p50_s=percentile(fill_times, 0.5),
        fill_time_p90_s=percentile(fill_times, 0.9),
    )
