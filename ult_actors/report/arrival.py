"""An order's arrival price: the venue's quote when the service receives it.

Never on the order's path: the paper venue's price is to hand, without I/O,
and a remote venue that quotes (``SupportsQuotes``) is asked beside the
send, its answer stamped on the order when it comes; a quote asked for that
symbol less than ``fresh_s`` ago stands for the venue's at receipt. With
none, the last trade the broker actor saw in the symbol (its last fill),
marked as such, until the venue's quote comes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import cast

import msgspec

from ult_actors.brokers.base import SupportsQuotes, conforms
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import trades_symbol
from ult_actors.messages import ArrivalSource, Fill, Order
from ult_actors.recent import Recent

#: A symbol's current quote without I/O; None: the venue has none for it.
Quotes = Callable[[str], Decimal | None]
#: Asks the venue for a symbol's quote (one request).
FetchQuote = Callable[[str], Awaitable[Decimal | None]]
#: New orders whose fetched quote is remembered until their record takes it.
_KEPT = 10_000


def venue_quotes(connector: object) -> Quotes | None:
    """The cached quotes ``connector`` offers, if any (the paper venue's prices).

    Only for symbols the venue trades: asking the paper feed about another
    would start a price walk for it.
    """
    if isinstance(connector, PaperConnector):
        return PaperQuotes(connector)
    return None


class PaperQuotes:
    """A paper venue's current price of a symbol it trades (``None`` for another): the
    quotes ``venue_quotes`` offers of a paper connector.

    Asked for every new order (``ArrivalPrices.arrival``): a symbol found traded is
    remembered, so the next order's asks no interpreted ``trades_symbol`` (its settings
    are frozen: a symbol traded stays traded). A native class, compiled, which
    ``ArrivalPrices`` calls without the generic call protocol.
    """

    def __init__(self, connector: PaperConnector) -> None:
        self._connector = connector
        self._settings = connector.settings
        #: Symbols ``trades_symbol`` allowed.
        self._traded: set[str] = set()

    def __call__(self, symbol: str) -> Decimal | None:
        return self.quote(symbol)

    def quotes(self, symbol: str) -> bool:
        """Whether ``quote`` of ``symbol`` is known to give a price (it gave one before)."""
        return symbol in self._traded

    def quote(self, symbol: str) -> Decimal | None:
        """``symbol``'s current price at the venue, if the venue trades it."""
        if symbol not in self._traded:
            if not trades_symbol(self._settings, symbol):
                return None
            self._traded.add(symbol)
        return self._connector.price(symbol)


def venue_fetch(connector: object) -> FetchQuote | None:
    """How to ask ``connector``'s venue for a quote, if it can be asked."""
    # ``conforms``: ``isinstance`` of a protocol walks its members, each connection's start.
    if conforms(connector, SupportsQuotes) and venue_quotes(connector) is None:
        return cast(SupportsQuotes, connector).quote
    return None


class ArrivalPrices:
    """Stamps orders with their arrival price; one per broker connection.

    ``clock``: seconds, monotonic (trio's), for how fresh a fetched quote is.
    """

    def __init__(
        self,
        quotes: Quotes | None,
        fetch: FetchQuote | None = None,
        *,
        clock: Callable[[], float] | None = None,
        fresh_s: float = 1.0,
    ) -> None:
        self._quotes = quotes
        #: The same quotes when they are a paper venue's: called natively, per order.
        self._paper = quotes if isinstance(quotes, PaperQuotes) else None
        self._fetch = fetch
        self._clock = clock
        self._fresh_s = fresh_s
        self._last_trade: dict[str, Decimal] = {}
        #: The latest quote fetched per symbol, and when.
        self._fetched: dict[str, tuple[float, Decimal]] = {}
        #: Quotes fetched for new orders, by client order id, until their record has it.
        self._for_order: Recent[str, Decimal] = Recent(_KEPT)

    def saw(self, fill: Fill) -> None:
        """Note an execution: its price is the symbol's last trade from now on."""
        paper = self._paper
        if paper is not None and paper.quotes(fill.symbol):
            return  # the venue's quote is the arrival price there: its last trade is not read
        if fill.qty:  # fees reported later are no trade
            self._last_trade[fill.symbol] = fill.price

    def arrival(self, symbol: str) -> tuple[Decimal, ArrivalSource] | None:
        """A new order's arrival price in ``symbol`` and where it came from, if one is known
        (its first record is built with them: ``order_from_request``)."""
        paper = self._paper
        if paper is not None:
            quote = paper.quote(symbol)
        else:
            quote = self._quotes(symbol) if self._quotes is not None else None
        if quote is None:
            quote = self._fresh(symbol)
        if quote is not None:
            return quote, "venue_quote"
        last = self._last_trade.get(symbol)
        if last is None:
            return None
        return last, "last_trade"

    def wants_quote(self, order: Order) -> bool:
        """Whether to ask the venue for ``order``'s quote beside its send."""
        return self._fetch is not None and order.arrival_source != "venue_quote"

    async def fetch(self, order: Order) -> Decimal | None:
        """Ask the venue for ``order``'s quote; remembered for ``restamp``. Raises what
        the request raises."""
        assert self._fetch is not None
        quote = await self._fetch(order.symbol)
        if quote is not None:
            self._for_order.put(order.client_order_id, quote)
            if self._clock is not None:
                self._fetched[order.symbol] = (self._clock(), quote)
        return quote

    def restamp(self, order: Order) -> Order:
        """``order`` with the venue quote fetched for it, if one came and it lacks one."""
        if self._fetch is None or order.arrival_source == "venue_quote":
            return order  # a venue never asked (``fetch``) fetched none
        quote = self._for_order.get(order.client_order_id)
        if quote is None:
            return order
        return msgspec.structs.replace(order, arrival_price=quote, arrival_source="venue_quote")

    def _fresh(self, symbol: str) -> Decimal | None:
        fetched = self._fetched.get(symbol)
        if fetched is None or self._clock is None:
            return None
        at, quote = fetched
        return quote if self._clock() - at <= self._fresh_s else None
