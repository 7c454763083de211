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
