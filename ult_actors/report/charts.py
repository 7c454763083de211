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


class ChartData:
    """The distributions of the orders added so far: slippage per broker, cost per UTC
    day, time to last fill."""

    def __init__(self) -> None:
        self._slippage: dict[str, list[float]] = {}
        self._fill_times: list[float] = []
        self._per_day: dict[str, Decimal] = {}

    def add(self, cost: OrderCost) -> None:
        """Count one order in."""
        if cost.slippage_bps is not None:
            self._slippage.setdefault(cost.broker, []).append(cost.slippage_bps)
        if cost.last_fill_s is not None:
            self._fill_times.append(cost.last_fill_s)
        day = utc_day(cost.created_at)
        paid = cost.shortfall if cost.shortfall is not None else cost.fees
        self._per_day[day] = self._per_day.get(day, Decimal(0)) + paid

    def charts(self) -> CostCharts:
        """The charts of what was added, binned."""
        return CostCharts(
            slippage_bps={broker: histogram(v) for broker, v in sorted(self._slippage.items())},
            cost_per_day=dict(sorted(self._per_day.items())),
            fill_time_s=histogram(self._fill_times) if self._fill_times else None,
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
