"""What the paper venues change: one ``Batch`` per venue call, and the ``Rows`` a fold writes.

A venue call hands the writer one ``Batch``: copies of the orders it
changed as they are at the call's end, its fills, the holdings and prices
it moved and the account's counters. The batch is the change log's record
as it stands (one msgpack encode on the trio thread); the writer's thread
folds many of them into ``Rows``, the last state of each key winning, and
only then makes the file's columns (an order's JSON body, decimals as
text): that work is off the order's path, and done once per key and
commit instead of once per call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

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


_json = msgspec.json.Encoder().encode


class Batch(msgspec.Struct, array_like=True):
    """One venue call's changes to one account, as the change log holds them.

    Everything in it is a copy or immutable: the venue goes on changing its
    own objects while the writer's thread reads these.
    """

    account: str
    #: Copies of the orders the call changed, each with whether it is still open.
    orders: list[tuple[WorkingOrder, bool]]
    fills: list[Fill]
    #: ``(symbol, qty, avg_price, realized_pl)`` of each holding the call moved.
    holdings: list[tuple[str, Decimal, Decimal, Decimal]]
    #: ``(symbol, price)`` of each price moved since the last batch.
    prices: list[tuple[str, Decimal]]
    cash: Decimal
    created_at: int
    next_order: int
    next_fill: int
    #: Its number in the writer's order (set by ``BatchWriter.record``).
    seq: int = 0


@dataclass
class Rows:
    """What one transaction writes: batches folded in order, the last state of a key winning."""

    #: The last batch folded in (the file has every batch up to it once committed).
    seq: int = 0
    _orders: dict[tuple[str, str], tuple[WorkingOrder, bool]] = field(default_factory=dict)
    _fills: list[tuple[str, Fill]] = field(default_factory=list)
    _holdings: dict[tuple[str, str], tuple[str, Decimal, Decimal, Decimal]] = field(
        default_factory=dict
    )
    _prices: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    _accounts: dict[str, Batch] = field(default_factory=dict)

    def add(self, batch: Batch) -> None:
        """Fold ``batch`` in after what is here (its states of a key win)."""
        self.seq = batch.seq
        name = batch.account
        for entry in batch.orders:
            self._orders[name, entry[0].order.id] = entry
        self._fills.extend((name, fill) for fill in batch.fills)
        for holding in batch.holdings:
            self._holdings[name, holding[0]] = holding
        for symbol, price in batch.prices:
            self._prices[name, symbol] = price
        self._accounts[name] = batch  # its counters are the account's latest

    def __bool__(self) -> bool:
        """Whether any batch was folded in (each carries its account's row at least)."""
        return bool(self._accounts)

    def orders(self) -> Iterator[tuple[Any, ...]]:
        """``(account, id, client_order_id, open, body)`` of each order."""
        for (name, oid), (working, is_open) in self._orders.items():
            yield name, oid, working.order.client_order_id, int(is_open), _json(working)

    def fills(self) -> Iterator[tuple[Any, ...]]:
        """``(account, fill_id, order_id, body)`` of each fill, oldest first."""
        for name, fill in self._fills:
            yield name, fill.fill_id, fill.order_id, _json(fill)

    def positions(self) -> Iterator[tuple[Any, ...]]:
        """``(account, symbol, qty, avg_price, realized_pl)`` of each holding."""
        for (name, symbol), (_, qty, avg, pl) in self._holdings.items():
            yield name, symbol, str(qty), str(avg), str(pl)

    def prices(self) -> Iterator[tuple[Any, ...]]:
        """``(account, symbol, price)`` of each price."""
        for (name, symbol), price in self._prices.items():
            yield name, symbol, str(price)

    def accounts(self) -> Iterator[tuple[Any, ...]]:
        """``(name, cash, created_at, next_order, next_fill)`` of each account."""
        for name, last in self._accounts.items():
            yield name, str(last.cash), last.created_at, last.next_order, last.next_fill
