"""What the paper venues change: one record per venue call, and the ``Rows`` a fold writes.

A venue call's changes (the orders it changed as they are at its end, its
fills, the holdings and prices it moved, the account's counters) are
encoded once, on the trio thread, by ``encode_change`` (one msgpack
encode): that record is what the change log holds and what the writer's
thread folds. Its bytes are fixed when made, so the venue may go on
changing its own objects: no copy of them is needed, and the writer's
thread shares no object with the loop. Each order and fill in it is a
msgpack array of its fields by position (``msgspec.structs.astuple``): no
field names to write, read, CRC and store, where a map of a 24-field
``Order`` was two thirds names. The writer's thread reads it back as a
``Change``: strings, and each order's and fill's msgpack left as it is
(``msgspec.Raw``; only the keys of its row are read from it), which the
file stores as their bodies: no JSON, no decimal and no order object are
made off the loop either. A log of the version before (``MapBodiesChange``,
its bodies maps) is read too.

Compiled by mypyc in the compiled build; its record classes, declared with
class keywords, live in ``paper.records`` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
from msgspec.structs import astuple

from ult_actors.brokers.paper.records import (
    CHANGE_TAG,
    Change,
    FillKeys,
    MapBodiesChange,
    WorkingKeys,
    WorkingOrder,
)
from ult_actors.messages import Fill

__all__ = ["CHANGE_TAG", "Change", "Rows", "WorkingOrder", "decode_change", "encode_change"]


_encode = msgspec.msgpack.Encoder().encode

decode_change = msgspec.msgpack.Decoder(Change | MapBodiesChange).decode


class _OrderKey(msgspec.Struct):
    client_order_id: str


class _WorkingKey(msgspec.Struct):
    order: _OrderKey


class _FillKeys(msgspec.Struct):
    fill_id: str
    order_id: str


#: The keys of the file's rows, read from a body without the rest of it.
_working_keys = msgspec.msgpack.Decoder(WorkingKeys).decode
_fill_keys = msgspec.msgpack.Decoder(FillKeys).decode
#: The same from a body of the version before (a map).
_map_working_key = msgspec.msgpack.Decoder(_WorkingKey).decode
_map_fill_keys = msgspec.msgpack.Decoder(_FillKeys).decode


def encode_change(
    account: str,
    orders: dict[str, WorkingOrder],
    ended: Iterable[WorkingOrder],
    fills: list[Fill],
    holdings: list[tuple[str, Decimal, Decimal, Decimal]],
    prices: list[tuple[str, Decimal]],
    counters: tuple[Decimal, int, int, int],
) -> bytes:
    """The record of one venue call, as ``Change`` reads it: the orders it changed (by
    id) and those of them that ended, its fills, holdings (``(symbol, qty, avg_price,
    realized_pl)``) and prices, and ``counters``
    (cash, created_at, next_order, next_fill). One encode of the venue's own objects:
    the trio thread builds nothing else for the file."""
    cash, created_at, next_order, next_fill = counters
    return _encode((
        CHANGE_TAG,
        account,
        {
            oid: (astuple(w.order), w.triggered, w.in_transit, w.commission)
            for oid, w in orders.items()
        },
        [w.order.id for w in ended],
        [astuple(fill) for fill in fills],
        holdings,
        prices,
        cash,
        created_at,
        next_order,
        next_fill,
    ))  # fmt: skip


@dataclass
class Rows:
    """What one transaction writes: records folded in order, the last state of a key winning."""

    #: The last record folded in (the file has every record up to it once committed).
    seq: int = 0
    _orders: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    _fills: list[tuple[Any, ...]] = field(default_factory=list)
    _holdings: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    _prices: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    _accounts: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def add(self, change: Change, seq: int = 0) -> None:
        """Fold ``change`` (record ``seq``) in after what is here (its states of a key win)."""
        self.seq = seq
        name = change.account
        ended = change.ended
        arrays = not isinstance(change, MapBodiesChange)
        # Bodies as ``bytearray``: what sqlite3 binds without looking for an adapter.
        for oid, body in change.orders.items():
            working = _working_keys(body) if arrays else _map_working_key(body)
            coid = working.order.client_order_id
            self._orders[name, oid] = (name, oid, coid, int(oid not in ended), bytearray(body))
        for body in change.fills:
            keys = _fill_keys(body) if arrays else _map_fill_keys(body)
            self._fills.append((name, keys.fill_id, keys.order_id, bytearray(body)))
        for symbol, qty, avg, pl in change.holdings:
            self._holdings[name, symbol] = (name, symbol, qty, avg, pl)
        for symbol, price in change.prices:
            self._prices[name, symbol] = (name, symbol, price)
        # Its counters are the account's latest.
        self._accounts[name] = (
            name, change.cash, change.created_at, change.next_order, change.next_fill
        )  # fmt: skip

    def __bool__(self) -> bool:
        """Whether any record was folded in (each carries its account's row at least)."""
        return bool(self._accounts)

    def orders(self) -> Iterable[tuple[Any, ...]]:
        """``(account, id, client_order_id, open, body)`` of each order."""
        return self._orders.values()

    def fills(self) -> Iterable[tuple[Any, ...]]:
        """``(account, fill_id, order_id, body)`` of each fill, oldest first."""
        return self._fills

    def positions(self) -> Iterable[tuple[Any, ...]]:
        """``(account, symbol, qty, avg_price, realized_pl)`` of each holding."""
        return self._holdings.values()

    def prices(self) -> Iterable[tuple[Any, ...]]:
        """``(account, symbol, price)`` of each price."""
        return self._prices.values()

    def accounts(self) -> Iterable[tuple[Any, ...]]:
        """``(name, cash, created_at, next_order, next_fill)`` of each account."""
        return self._accounts.values()
