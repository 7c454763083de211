"""The distributions a report page draws, binned on the service's side so the reply
stays small however many orders the journal holds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

from ult_actors.messages import CostCharts, Histogram, OrderCost
from ult_actors.report.costs import utc_day

#: Bins of every histogram.
BINS = 20


def build_charts(costs: Sequence[OrderCost]) -> CostCharts:
    """Slippage per broker, cost per UTC day and time to last fill of ``costs``."""
    slippage: dict[str, list[float]] = {}
    fill_times: list[float] = []
    per_day: dict[str, Decimal] = {}
    for c in costs:
        if c.slippage_bps is not None:
            slippage.setdefault(c.broker, []).append(c.slippage_bps)
        if c.last_fill_s is not None:
            fill_times.append(c.last_fill_s)
        day = utc_day(c.created_at)
        cost = c.shortfall if c.shortfall is not None else c.fees
        per_day[day] = per_day.get(day, Decimal(0)) + cost
    return CostCharts(
        slippage_bps={broker: histogram(v) for broker, v in sorted(slippage.items())},
        cost_per_day=dict(sorted(per_day.items())),
        fill_time_s=histogram(fill_times) if fill_times else None,
    )


def histogram(values: Sequence[float], bins: int = BINS) -> Histogram:
    """``values`` counted in ``bins`` equal bins from their least to their greatest."""
    low, high = min(values), max(values)
    if math.isclose(low, high):
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / width))] += 1
    return Histogram(low=low, high=high, counts=counts)
