"""The paper broker's price feed: a seeded random walk per symbol.

Each step multiplies a symbol's price by ``1 + volatility * N(0, 1)``, with
the normal draw taken from one injected ``random.Random``. Symbols are
stepped in sorted order, so the same seed, the same symbols and the same
number of steps give the same prices on every run. A symbol first seen gets
its configured start price (or the default one). Prices are ``Decimal``
rounded to ``price_decimals`` and never fall below one increment.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from decimal import Decimal


class PriceFeed:
    """Current prices of every symbol the paper venue has seen, and how they move."""

    def __init__(
        self,
        rng: random.Random,
        *,
        start_prices: Mapping[str, Decimal],
        default_start_price: Decimal,
        volatility_bps: Decimal,
        price_decimals: int,
    ) -> None:
        self._rng = rng
        self._start = dict(start_prices)
        self._default = default_start_price
        self._sigma = float(volatility_bps) / 10_000
        self._quantum = Decimal(1).scaleb(-price_decimals)
        self._prices: dict[str, Decimal] = {}

    @property
    def quantum(self) -> Decimal:
        """The smallest price increment."""
        return self._quantum

    def round(self, price: Decimal) -> Decimal:
        """``price`` on the feed's increment, at least one increment."""
        quantum = self._quantum
        rounded = price.quantize(quantum)
        return rounded if rounded > quantum else quantum

    def price(self, symbol: str) -> Decimal:
        """The current price of ``symbol``; a new symbol starts at its start price."""
        current = self._prices.get(symbol)
        if current is None:
            current = self.round(self._start.get(symbol, self._default))
            self._prices[symbol] = current
        return current

    def known(self) -> dict[str, Decimal]:
        """Every symbol with a price, and that price."""
        return dict(self._prices)

    def load(self, prices: Iterable[tuple[str, Decimal]]) -> None:
        """Resume from saved prices (after a restart)."""
        for symbol, price in prices:
            self._prices[symbol] = price

    def set(self, symbol: str, price: Decimal) -> Decimal:
        """Put ``symbol`` at ``price`` (for tests and rehearsals); returns the rounded price."""
        rounded = self.round(price)
        self._prices[symbol] = rounded
        return rounded

    def step(self) -> dict[str, Decimal]:
        """Move every known symbol one step of the walk; returns the new prices."""
        for symbol in sorted(self._prices):
            move = self._rng.gauss(0.0, self._sigma)
            old = self._prices[symbol]
            self._prices[symbol] = self.round(old * (1 + Decimal(f"{move:.12f}")))
        return dict(self._prices)
