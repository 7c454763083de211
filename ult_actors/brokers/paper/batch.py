"""What the paper venues change, as rows of the accounts file: one ``Batch`` per venue call.

The venue stages its changes into a ``Batch`` (orders, fills, positions,
prices, the account's counters); the change log writes it as one record
and the writer's thread folds many of them into one transaction
(``merge``), later rows of a key winning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from ult_actors.brokers.paper.account import PaperHolding
from ult_actors.messages import Fill, Order


class WorkingOrder(msgspec.Struct, kw_only=True):
    """An order at the paper venue plus the matching state the ``Order`` does not carry."""

    order: Order
    #: A stop or stop-limit whose stop price has been reached.
    triggered: bool = False
    #: Still travelling to the venue (``latency_ms``); not yet matched.
    in_transit: bool = False
    #: Commissions charged so far.
    commission: Decimal = Decimal(0)


encode = msgspec.json.Encoder().encode


@dataclass
class Batch:
    """Rows to write in one transaction; later rows of a key win."""

    seq: int = 0
    orders: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    fills: list[tuple[Any, ...]] = field(default_factory=list)
    positions: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    prices: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    accounts: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        """Rows staged (a later row of the same key replaced the earlier one)."""
        return (
            len(self.orders)
            + len(self.fills)
            + len(self.positions)
            + len(self.prices)
            + len(self.accounts)
        )

    def merge(self, later: Batch) -> None:
        """Take ``later``'s rows over these (its rows of a key win); its ``seq`` too."""
        self.seq = later.seq
        self.orders.update(later.orders)
        self.fills.extend(later.fills)
        self.positions.update(later.positions)
        self.prices.update(later.prices)
        self.accounts.update(later.accounts)

    def put_order(self, account: str, working: WorkingOrder, *, is_open: bool) -> None:
        order = working.order
        row = (account, order.id, order.client_order_id, int(is_open), encode(working))
        self.orders[account, order.id] = row

    def put_fill(self, account: str, fill: Fill) -> None:
        self.fills.append((account, fill.fill_id, fill.order_id, encode(fill)))

    def put_holding(self, account: str, symbol: str, holding: PaperHolding) -> None:
        row = (account, symbol, str(holding.qty), str(holding.avg_price), str(holding.realized_pl))
        self.positions[account, symbol] = row

    def put_price(self, account: str, symbol: str, price: Decimal) -> None:
        self.prices[account, symbol] = (account, symbol, str(price))

    def put_account(
        self, account: str, *, cash: Decimal, created_at: int, next_order: int, next_fill: int
    ) -> None:
        self.accounts[account] = (account, str(cash), created_at, next_order, next_fill)
