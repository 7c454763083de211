"""The paper account's money: cash, positions, average prices and P&L.

Margin model, deliberately simple: no leverage. Every open position ties up
its full market value (long or short), and so does the part of every open
order that would enlarge a position. So for a long-only account
``buying_power = cash - reserved``, and a short of value S uses S of buying
power (its sale proceeds are in cash but are owed back).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ult_actors.holding import Holding
from ult_actors.messages import Side

ZERO = Decimal(0)


@dataclass
class PaperHolding(Holding):
    """The net position in one symbol and the P&L it has realized so far (commissions too)."""

    realized_pl: Decimal = ZERO


def signed(side: Side, qty: Decimal) -> Decimal:
    """``qty`` with a buy positive and a sell negative."""
    return qty if side == "buy" else -qty


def exposure_increase(position: Decimal, side: Side, qty: Decimal) -> Decimal:
    """How many of ``qty`` would enlarge the absolute position (the rest closes it)."""
    delta = signed(side, qty)
    if position == 0 or (position > 0) == (delta > 0):
        return qty
    return max(ZERO, qty - abs(position))


class PaperAccount:
    """Cash and holdings; fills are applied here and nowhere else."""

    def __init__(self, cash: Decimal) -> None:
        self.cash = cash
        self.holdings: dict[str, PaperHolding] = {}

    def position(self, symbol: str) -> Decimal:
        holding = self.holdings.get(symbol)
        return holding.qty if holding else ZERO

    def apply_fill(
        self, symbol: str, side: Side, qty: Decimal, price: Decimal, commission: Decimal
    ) -> PaperHolding:
        """Book one execution: cash moves, the position and its average price follow.

        The position moves as ``Holding.book`` says; commissions are paid from
        cash and counted in realized P&L. Returns the holding after the fill.
        """
        delta = signed(side, qty)
        self.cash -= delta * price + commission
        holding = self.holdings.setdefault(symbol, PaperHolding())
        holding.realized_pl -= commission
        holding.realized_pl += holding.book(delta, price)
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
