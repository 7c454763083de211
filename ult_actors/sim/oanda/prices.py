"""The simulator's instruments and its deterministic, seeded price feed.

Each instrument's mid price walks by whole points (the last displayed
decimal) drawn from a seeded ``random.Random``, so two simulators with the
same seed quote the same prices step for step. The spread is fixed per
instrument. Tests (or a chaos script) can pin a quote with ``set_quote``,
and with it how many units it offers (``liquidity``; fills use it up until
the next step brings a fresh quote).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Instrument:
    """A tradeable instrument as the simulator knows it."""

    name: str
    display_precision: int
    start_mid: Decimal
    #: Spread in points (one point = 10**-display_precision).
    spread_points: int = 14
    type: str = "CURRENCY"

    @property
    def point(self) -> Decimal:
        return Decimal(1).scaleb(-self.display_precision)

    def text(self, price: Decimal, *, extra: int = 0) -> str:
        """A price as v20 writes it: the instrument's decimals (plus ``extra``)."""
        return f"{price.quantize(Decimal(1).scaleb(-(self.display_precision + extra))):f}"

    @property
    def base(self) -> str:
        return self.name.split("_")[0]

    @property
    def quote(self) -> str:
        return self.name.split("_")[1]


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument("EUR_USD", 5, Decimal("1.08500")),
        Instrument("GBP_USD", 5, Decimal("1.27000"), 18),
        Instrument("AUD_USD", 5, Decimal("0.66000"), 16),
        Instrument("USD_CHF", 5, Decimal("0.88000"), 18),
        Instrument("EUR_GBP", 5, Decimal("0.85500"), 16),
        Instrument("USD_JPY", 3, Decimal("150.000"), 16),
        Instrument("XAU_USD", 3, Decimal("2350.000"), 350, "METAL"),
    )
}


#: Units a quote offers unless pinned with less: more than any order the simulator takes.
DEFAULT_LIQUIDITY = Decimal(10_000_000)


@dataclass(frozen=True)
class Quote:
    """Bid and ask of one instrument at one step, and the units still offered at them."""

    bid: Decimal
    ask: Decimal
    liquidity: Decimal = DEFAULT_LIQUIDITY

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


class PriceFeed:
    """Seeded random walk of every instrument's mid; ``step`` moves all of them once."""

    def __init__(self, seed: int = 1, instruments: dict[str, Instrument] | None = None) -> None:
        self.instruments = dict(instruments or INSTRUMENTS)
        self._rng = random.Random(seed)
        self._quotes = {name: self._around(i, i.start_mid) for name, i in self.instruments.items()}

    @staticmethod
    def _around(instrument: Instrument, mid: Decimal) -> Quote:
        half = instrument.point * instrument.spread_points / 2
        exp = instrument.point
        return Quote(bid=(mid - half).quantize(exp), ask=(mid + half).quantize(exp))

    def quote(self, instrument: str) -> Quote:
        """The current quote (``KeyError`` for an unknown instrument)."""
        return self._quotes[instrument]

    def step(self) -> None:
        """Move every mid by -3..3 points; never below 100 points."""
        for name, instrument in self.instruments.items():
            move = self._rng.randint(-3, 3) * instrument.point
            mid = max(self._quotes[name].mid + move, instrument.point * 100)
            self._quotes[name] = self._around(instrument, mid)

    def set_quote(
        self,
        instrument: str,
        bid: Decimal,
        ask: Decimal,
        liquidity: Decimal = DEFAULT_LIQUIDITY,
    ) -> None:
        """Pin a quote (it walks on from there at the next step)."""
        if instrument not in self.instruments:
            raise KeyError(instrument)
        if not (0 < bid <= ask):
            raise ValueError("need 0 < bid <= ask")
        if liquidity < 0:
            raise ValueError("liquidity cannot be negative")
        self._quotes[instrument] = Quote(bid=bid, ask=ask, liquidity=liquidity)

    def take(self, instrument: str, amount: Decimal) -> None:
        """Use up ``amount`` units of the quote's liquidity (a fill took them)."""
        quote = self._quotes[instrument]
        left = max(Decimal(0), quote.liquidity - amount)
        self._quotes[instrument] = Quote(bid=quote.bid, ask=quote.ask, liquidity=left)

    def home_rate(self, currency: str, home: str = "USD") -> Decimal:
        """How many ``home`` units one unit of ``currency`` is worth, from mids."""
        if currency == home:
            return Decimal(1)
        direct = self._quotes.get(f"{currency}_{home}")
        if direct is not None:
            return direct.mid
        inverse = self._quotes.get(f"{home}_{currency}")
        if inverse is not None:
            return 1 / inverse.mid
        return Decimal(1)  # no cross known: the simulator's accounts are USD
