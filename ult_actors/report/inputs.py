"""What a cost report is computed from: orders, each with its own fills, and the price
of a symbol's last trade at a moment (an unfilled rest's opportunity cost)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Protocol

from ult_actors.messages import Fill, Order


class CostInputs(Protocol):
    """A journal's orders and fills, as a report reads them: one order at a time."""

    def orders(self) -> Iterator[tuple[Order, Sequence[Fill]]]:
        """Orders (a superset of what the report covers), each with its own fills."""
        ...

    def last_trade(self, symbol: str, ts: int) -> Decimal | None:
        """The price of ``symbol``'s last fill at or before ``ts``, at any broker; None:
        none was. Only called while ``orders()`` is being read."""
        ...


class OrdersAndFills:
    """``CostInputs`` from orders and fills in memory (the in-memory journal, tests)."""

    def __init__(self, orders: Iterable[Order], fills: Iterable[Fill]) -> None:
        self._orders = list(orders)
        self._fills: dict[str, list[Fill]] = {}
        for fill in fills:
            self._fills.setdefault(fill.client_order_id, []).append(fill)
        self._trades = LastTrades(f for fs in self._fills.values() for f in fs)

    def orders(self) -> Iterator[tuple[Order, Sequence[Fill]]]:
        for order in self._orders:
            yield order, self._fills.get(order.client_order_id, ())

    def last_trade(self, symbol: str, ts: int) -> Decimal | None:
        return self._trades.at(symbol, ts)


class LastTrades:
    """Each symbol's fills in time order: the price of its last fill at a moment."""

    def __init__(self, fills: Iterable[Fill]) -> None:
        by_symbol: dict[str, list[tuple[int, Decimal]]] = {}
        for fill in fills:
            if fill.qty:  # fees reported later are no trade
                by_symbol.setdefault(fill.symbol, []).append((fill.ts, fill.price))
        self._times: dict[str, list[int]] = {}
        self._prices: dict[str, list[Decimal]] = {}
        for symbol, trades in by_symbol.items():
            trades.sort(key=lambda trade: trade[0])
            self._times[symbol] = [ts for ts, _ in trades]
            self._prices[symbol] = [price for _, price in trades]

    def at(self, symbol: str, ts: int) -> Decimal | None:
        """The price of ``symbol``'s last fill at or before ``ts``; None: none was."""
        times = self._times.get(symbol)
        if not times:
            return None
        i = bisect.bisect_right(times, ts)
        return self._prices[symbol][i - 1] if i else None
