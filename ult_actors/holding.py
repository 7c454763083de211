"""A net position and its average price, moved by fills: the one copy of that arithmetic.

Risk's books, the positions book, the paper account and the IB simulator
all fold fills with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

#: ``Final``: a compiled module reads it as a C static, not from its module's dict (a lookup
#: per use; ``Holding.book`` reads it three times a fill).
ZERO: Final = Decimal(0)


@dataclass
class Holding:
    """Signed quantity (negative is short) and the average price it was opened at."""

    qty: Decimal = ZERO
    avg_price: Decimal = ZERO

    def book(self, signed_qty: Decimal, price: Decimal) -> Decimal:
        """Apply one fill (a buy positive, a sell negative); returns the P&L it realized.

        Adding to a position moves the average price; closing (part of) one
        realizes ``(price - avg) * closed`` for a long and the opposite for a
        short; a fill that flips the position opens the remainder at ``price``.
        """
        # Folded by risk and positions for every fill: compared with ``ZERO``, not ``0``
        # (an int is converted on each comparison), and no ``abs`` where signs cancel.
        old = self.qty
        new = old + signed_qty
        realized = ZERO
        if not old:
            self.avg_price = price
        elif (old > ZERO) == (signed_qty > ZERO):
            # Same sign throughout: (avg * |old| + price * |qty|) / |new| without the abs.
            self.avg_price = (self.avg_price * old + price * signed_qty) / new
        else:
            closed = min(abs(signed_qty), abs(old))
            direction = 1 if old > ZERO else -1
            realized = (price - self.avg_price) * closed * direction
            if not new:
                self.avg_price = ZERO
            elif (new > ZERO) != (old > ZERO):
                self.avg_price = price
        self.qty = new
        return realized


class SharedBooking:
    """The last fill a holding booked through it, with the figures it found and left, so a
    second book that holds the same figures and folds the same fill takes the result
    instead of working it out again (risk's books and the positions book fold every
    fill; each keeps its own ``Holding``, as their ledgers differ by design). A paper
    venue's account books its fills through the service's too: it books each fill first
    (in its submit), and hands the books the figures it booked it with (its price as the
    order's average, its quantity as the order's filled quantity), so both take its result.
    All of them on the service's thread: one booking at a time.

    The figures are matched by identity: ``Decimal``s are immutable, so the same objects
    are the same digits and exponent, and ``Holding.book`` of them gives the same
    result. Two books that took the same result hold the same objects, so the next fill
    matches again; a book whose figures came from elsewhere (a broker's report) simply
    works its fill out itself. A native class (compiled): its fields are plain slots.
    """

    def __init__(self) -> None:
        # What the last booking read: the fill (its quantity, side, price) and the figures.
        self._qty: Decimal | None = None
        self._buy = False
        self._price: Decimal | None = None
        self._old_qty: Decimal | None = None
        self._old_avg: Decimal | None = None
        # What it left and realized.
        self._new_qty = ZERO
        self._new_avg = ZERO
        self._realized = ZERO

    def book(self, holding: Holding, qty: Decimal, buy: bool, price: Decimal) -> Decimal:
        """``holding.book`` of a fill of ``qty`` (a buy or a sell) at ``price``: the same
        figures left in ``holding`` and the same P&L returned."""
        old_qty, old_avg = holding.qty, holding.avg_price
        if (
            qty is self._qty
            and price is self._price
            and old_qty is self._old_qty
            and old_avg is self._old_avg
            and buy == self._buy
        ):
            holding.qty = self._new_qty
            holding.avg_price = self._new_avg
            return self._realized
        realized = holding.book(qty if buy else -qty, price)
        self._qty, self._buy, self._price = qty, buy, price
        self._old_qty, self._old_avg = old_qty, old_avg
        self._new_qty, self._new_avg, self._realized = holding.qty, holding.avg_price, realized
        return realized


def same_figure(a: Decimal, b: Decimal) -> bool:
    """Whether ``a`` and ``b`` are the same digits and exponent (and sign), not just equal
    in value: what ``Holding.book`` would not tell apart."""
    return a is b or not a.compare_total(b)
