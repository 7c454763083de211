"""The paper account's money: cash, positions, average prices and P&L.

Margin model, deliberately simple: no leverage. Every open position ties up
its full market value (long or short), and so does the part of every open
order that would enlarge a position. So for a long-only account
``buying_power = cash - reserved``, and a short of value S uses S of buying
power (its sale proceeds are in cash but are owed back).

An order's funds check (``free``) asks that on every order: a long's market
value counts in equity and in gross exposure alike, so it passes over the
short holdings only (kept as they change), not over every position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from ult_actors.holding import Holding, SharedBooking
from ult_actors.messages import Side

ZERO: Final = Decimal(0)  # Final: a C static once compiled (``holding.ZERO``)


@dataclass
class PaperHolding(Holding):
    """The net position in one symbol and the P&L it has realized so far (commissions too)."""

    realized_pl: Decimal = ZERO


def exposure_increase(position: Decimal, side: Side, qty: Decimal) -> Decimal:
    """How many of ``qty`` would enlarge the absolute position (the rest closes it)."""
    # Compared with ``ZERO``, not ``0``: asked on every order, and an int is converted
    # on each comparison.
    if not position or (position > ZERO) == (side == "buy"):
        return qty
    return max(ZERO, qty - abs(position))


class PaperAccount:
    """Cash and holdings; fills are applied here and nowhere else."""

    def __init__(
        self,
        cash: Decimal,
        holdings: dict[str, PaperHolding] | None = None,
        booking: SharedBooking | None = None,
    ) -> None:
        self.cash = cash
        #: How a fill moves a holding (``Holding.book``), through the booking the service's
        #: risk and positions books share when it hands the venue theirs: they fold the same
        #: fill on the same figures next, and take what this one worked out.
        self.booking = SharedBooking() if booking is None else booking
        #: Whether ``cash`` is a figure to the context's precision (``cash - 0`` is ``cash``):
        #: any but a starting cash of more than 28 digits, and every one a fill worked out.
        self._cash_rounded = cash - ZERO == cash
        self.holdings: dict[str, PaperHolding] = {} if holdings is None else holdings
        #: The symbols held short (``apply_fill`` keeps it): all ``free`` passes over.
        self._shorts = {s for s, h in self.holdings.items() if h.qty < ZERO}

    def position(self, symbol: str) -> Decimal:
        holding = self.holdings.get(symbol)
        return holding.qty if holding else ZERO

    def apply_fill(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        commission: Decimal,
        value: Decimal | None = None,
    ) -> PaperHolding:
        """Book one execution: cash moves, the position and its average price follow.

        The position moves as ``Holding.book`` says; commissions are paid from
        cash and counted in realized P&L. ``value``: ``price * qty``, if the caller
        has worked it out. Returns the holding after the fill.
        """
        if value is None:
            value = price * qty
        buy = side == "buy"
        # ``value`` or its negation: the same figure as the signed quantity times ``price`` (a
        # product's rounding is symmetric), without the multiplication.
        self.cash -= (value if buy else -value) + commission
        self._cash_rounded = True
        holding = self.holdings.get(symbol)
        if holding is None:
            holding = self.holdings[symbol] = PaperHolding()
        holding.realized_pl -= commission
        holding.realized_pl += self.booking.book(holding, qty, buy, price)
        shorts = self._shorts
        if buy and symbol not in shorts:
            # Bought onto a position that was not short (a fill's quantity is never below
            # 0): not short now either, without the compare (most fills: longs bought).
            return holding
        if holding.qty < ZERO:
            shorts.add(symbol)
        else:
            shorts.discard(symbol)
        return holding

    def gross_exposure(self, marks: dict[str, Decimal]) -> Decimal:
        """The market value of every position, longs and shorts alike."""
        return sum(
            (abs(h.qty) * marks.get(s, h.avg_price) for s, h in self.holdings.items() if h.qty),
            ZERO,
        )

    def equity(self, marks: dict[str, Decimal]) -> Decimal:
        """Cash plus the signed market value of every position."""
        return self.cash + sum(
            (h.qty * marks.get(s, h.avg_price) for s, h in self.holdings.items() if h.qty),
            ZERO,
        )

    def buying_power(self, marks: dict[str, Decimal], reserved: Decimal) -> Decimal:
        """What new exposure the account can still take on."""
        return self.equity(marks) - self.gross_exposure(marks) - reserved

    def free(
        self, price: Callable[[str], Decimal], reserved: Decimal | None = None
    ) -> Decimal:
        """``buying_power`` at the prices ``price`` gives (every holding's symbol has one),
        less ``reserved`` (``None``: nothing reserved, the usual case: no subtraction).

        The same figure (exact decimals; its exponent may differ), reached without a
        pass over the longs: a long adds its value to equity and to gross exposure
        alike, a short takes it from both, so only shorts, twice their value, set it
        apart from cash.
        """
        if not self._shorts:
            if reserved is None:
                return self.cash if self._cash_rounded else self.cash - ZERO
            return self.cash - reserved
        short_value = ZERO  # negative
        for symbol in self._shorts:
            short_value += self.holdings[symbol].qty * price(symbol)
        free = self.cash + short_value + short_value
        return free if reserved is None else free - reserved
