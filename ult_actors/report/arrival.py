"""An order's arrival price: the price to hand when the service receives it.

Read from what is cached, never fetched, so stamping it adds nothing to the
order's path: the venue's own quote where the connector holds one without
I/O (the paper venue's price), else the last trade the broker actor saw in
the symbol (its last fill), marked as such.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol, runtime_checkable

import msgspec

from ult_actors.messages import Fill, Order


@runtime_checkable
class CachedQuotes(Protocol):
    """A connector that knows a symbol's current price without I/O (the paper venue)."""

    def price(self, symbol: str) -> Decimal:
        """The current price of ``symbol``."""
        ...


class ArrivalPrices:
    """Stamps orders with their arrival price; one per broker connection."""

    def __init__(self, connector: object) -> None:
        self._quotes = connector if isinstance(connector, CachedQuotes) else None
        self._last_trade: dict[str, Decimal] = {}

    def saw(self, fill: Fill) -> None:
        """Note an execution: its price is the symbol's last trade from now on."""
        self._last_trade[fill.symbol] = fill.price

    def stamp(self, order: Order) -> Order:
        """``order`` with its arrival price and where it came from (unchanged: none known)."""
        if self._quotes is not None:
            price = self._quotes.price(order.symbol)
            return msgspec.structs.replace(order, arrival_price=price, arrival_source="venue_quote")
        last = self._last_trade.get(order.symbol)
        if last is None:
            return order
        return msgspec.structs.replace(order, arrival_price=last, arrival_source="last_trade")
