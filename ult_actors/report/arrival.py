"""An order's arrival price: the price to hand when the service receives it.

Read from what is cached, never fetched, so stamping it adds nothing to the
order's path: the venue's own quote where the connector holds one without
I/O (the paper venue's price, for a symbol it trades), else the last trade
the broker actor saw in the symbol (its last fill), marked as such.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec

from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import trades_symbol
from ult_actors.messages import Fill, Order

#: A symbol's current quote without I/O; None: the venue has none for it.
Quotes = Callable[[str], Decimal | None]


def venue_quotes(connector: object) -> Quotes | None:
    """The cached quotes ``connector`` offers, if any (today: the paper venue's prices).

    Only for symbols the venue trades: asking the paper feed about another
    would start a price walk for it.
    """
    if isinstance(connector, PaperConnector):
        paper, settings = connector, connector.settings
        return lambda symbol: paper.price(symbol) if trades_symbol(settings, symbol) else None
    return None


class ArrivalPrices:
    """Stamps orders with their arrival price; one per broker connection."""

    def __init__(self, quotes: Quotes | None) -> None:
        self._quotes = quotes
        self._last_trade: dict[str, Decimal] = {}

    def saw(self, fill: Fill) -> None:
        """Note an execution: its price is the symbol's last trade from now on."""
        if fill.qty:  # fees reported later are no trade
            self._last_trade[fill.symbol] = fill.price

    def stamp(self, order: Order) -> Order:
        """``order`` with its arrival price and where it came from (unchanged: none known)."""
        quote = self._quotes(order.symbol) if self._quotes is not None else None
        if quote is not None:
            return msgspec.structs.replace(order, arrival_price=quote, arrival_source="venue_quote")
        last = self._last_trade.get(order.symbol)
        if last is None:
            return order
        return msgspec.structs.replace(order, arrival_price=last, arrival_source="last_trade")
