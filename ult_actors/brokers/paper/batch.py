"""What the paper venues change: one record per venue call, and the ``Rows`` a fold writes.

A venue call's changes (the orders it changed as they are at its end, its
fills, the holdings and prices it moved, the account's counters) are made
once, on the trio thread, by ``stage_change`` into a ``Change``: the file's
rows of that call, each order's and fill's body encoded (msgpack) and every
decimal made text. The change log holds its encode (``paper.writer``); the
writer's thread is handed the ``Change`` itself and folds its rows as they
are (``Rows.add``): no decode, no key read out of a body, no copy; each
order's new fills go into its own row (the file's layout 4). Its
values are fixed when made, so the venue may go on changing its own
objects. Each body is a msgpack array of the order's or fill's fields by
position (``msgspec.structs.astuple``): no field names to write, CRC and
store, where a map of a 24-field ``Order`` was two thirds names. Logs of
the versions before (``ArrayBodiesChange``: the bodies without their rows'
keys; ``MapBodiesChange``: its bodies maps) are read too, their keys read
out of the bodies (a map fill's body made an array, as an order's row keeps its
fills).

Compiled by mypyc in the compiled build; its record classes, declared with
class keywords, live in ``paper.records`` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
from msgspec.structs import astuple

from ult_actors.brokers.paper.records import (
    CHANGE_TAG,
    ArrayBodiesChange,
    Change,
    FillKeys,
    MapBodiesChange,
    WorkingKeys,
    WorkingOrder,
)
from ult_actors.messages import Fill

__all__ = [
    "CHANGE_TAG",
    "Change",
    "Rows",
    "WorkingOrder",
    "decode_change",
    "encode_change",
    "encode_fill",
    "joined_bodies",
    "stage_change",
]


_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode
_encode_into = _encoder.encode_into

#: A change log record's bytes, ``Change``'s.
encode_change = _encode

decode_change = msgspec.msgpack.Decoder(Change | ArrayBodiesChange | MapBodiesChange).decode


class _OrderKey(msgspec.Struct):
    client_order_id: str


class _WorkingKey(msgspec.Struct):
    order: _OrderKey


#: An order row's ``fills`` with none.
_NO_FILLS = bytearray()


def joined_bodies(rows: list[tuple[Any, ...]]) -> bytearray:
    """The bodies of fill rows ``rows``, one after the other."""
    if len(rows) == 1:
        body: bytearray = rows[0][3]
        return body
    joined = bytearray()
    for row in rows:
        joined += row[3]
    return joined


def _body(value: object) -> bytearray:
    """``value``'s msgpack as a ``bytearray``: what sqlite3 binds without looking for an
    adapter (encoded into it, not copied from ``bytes``)."""
    body = bytearray()
    _encode_into(value, body)
    return body


def encode_fill(fill: Fill) -> bytearray:
    """The body of ``fill`` as the file holds it: a msgpack array of its fields by position."""
    return _body(astuple(fill))


#: The keys of the file's rows, read from a body of an earlier version's record.
_working_keys = msgspec.msgpack.Decoder(WorkingKeys).decode
_fill_keys = msgspec.msgpack.Decoder(FillKeys).decode
#: The same from a body of the version before that (a map).
_map_working_key = msgspec.msgpack.Decoder(_WorkingKey).decode
_map_fill = msgspec.msgpack.Decoder(Fill).decode


def stage_change(
    account: str,
    orders: dict[str, WorkingOrder],
    open_orders: Container[str],
    fills: list[Fill],
    holdings: list[tuple[str, Decimal, Decimal, Decimal]],
    prices: list[tuple[str, Decimal]],
    counters: tuple[Decimal, int, int, int],
) -> Change:
    """The record of one venue call: the orders it changed (by id; those whose id is in
    ``open_orders`` are open), its fills, holdings (``(symbol, qty, avg_price,
    realized_pl)``) and prices, and ``counters`` (cash, created_at, next_order,
    next_fill), as the file's rows. The trio thread builds nothing else for the file."""
    order_rows = []
    for oid, w in orders.items():
        order = w.order
        body = _body((astuple(order), w.triggered, w.in_transit, w.commission))
        order_rows.append((account, oid, order.client_order_id, int(oid in open_orders), body))
    fill_rows = [(account, fill.fill_id, fill.order_id, encode_fill(fill)) for fill in fills]
    cash, created_at, next_order, next_fill = counters
    return Change(
        order_rows,
        fill_rows,
        [(account, s, str(qty), str(avg), str(pl)) for s, qty, avg, pl in holdings],
        [(account, s, str(price)) for s, price in prices],
        (account, str(cash), created_at, next_order, next_fill),
    )


@dataclass
class Rows:
    """What one transaction writes: records folded in order, the last state of a key winning.

    An order's fills go into its own row (the file's layout 4, ``paper.store``):
    ``orders()`` gives each order's row with the fills folded in since, in the
    order they came, to be appended to those its row has.
    """

    #: The last record folded in (the file has every record up to it once committed).
    seq: int = 0
    _orders: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    #: Each order's new fills' rows (``(account, fill_id, order_id, body)``), oldest first.
    _fills: dict[tuple[str, str], list[tuple[Any, ...]]] = field(default_factory=dict)
    _holdings: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    _prices: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    _accounts: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def add(self, change: Change | ArrayBodiesChange, seq: int = 0) -> None:
        """Fold ``change`` (record ``seq``) in after what is here (its states of a key win)."""
        self.seq = seq
        if not isinstance(change, Change):
            self._add_earlier(change)
            return
        # Its rows are the file's, kept as they are. Read as lists of anything: compiled,
        # a typed row would be unboxed (each item's type checked) and boxed anew.
        orders: list[Any] = change.orders
        fills: list[Any] = change.fills
        positions: list[Any] = change.positions
        prices: list[Any] = change.prices
        account: Any = change.account
        for row in orders:
            self._orders[row[0], row[1]] = row
        for row in fills:
            self._fill(row)
        for row in positions:
            self._holdings[row[0], row[1]] = row
        for row in prices:
            self._prices[row[0], row[1]] = row
        self._accounts[account[0]] = account

    def _fill(self, row: tuple[Any, ...]) -> None:
        key = (row[0], row[2])
        kept = self._fills.get(key)
        if kept is None:
            self._fills[key] = [row]
        else:
            kept.append(row)

    def _add_earlier(self, change: ArrayBodiesChange) -> None:
        """Fold in a record of an earlier version, its rows' keys read from its bodies."""
        name = change.account
        ended = change.ended
        arrays = not isinstance(change, MapBodiesChange)
        # Bodies as ``bytearray``: what sqlite3 binds without looking for an adapter.
        for oid, body in change.orders.items():
            working = _working_keys(body) if arrays else _map_working_key(body)
            coid = working.order.client_order_id
            self._orders[name, oid] = (name, oid, coid, int(oid not in ended), bytearray(body))
        for body in change.fills:
            if arrays:
                keys = _fill_keys(body)
                self._fill((name, keys.fill_id, keys.order_id, bytearray(body)))
            else:  # the file's fills are arrays, read back many at once (``fills_from_arrays``)
                fill = _map_fill(body)
                self._fill((name, fill.fill_id, fill.order_id, encode_fill(fill)))
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

    def orders(self, key: Callable[[str, str, int], int]) -> list[tuple[Any, ...]]:
        """``(account, id, client_order_id, open, body, fills, nfills, key)`` of each order:
        ``fills`` its new fills' bodies one after the other (``nfills`` of them), ``key``
        its row's (``key(account, id, open)``: the file's, ``store._Keys``)."""
        fills = self._fills
        rows: list[tuple[Any, ...]] = []
        for pair, row in self._orders.items():
            new = fills.pop(pair, None)
            at = key(row[0], row[1], row[3])
            if new is None:
                rows.append((*row, _NO_FILLS, 0, at))
            else:
                rows.append((*row, joined_bodies(new), len(new), at))
        return rows

    def fills(self) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
        """The new fills' rows ``(account, fill_id, order_id, body)`` by ``(account,
        order_id)``, oldest first; after ``orders()``, only those of orders it did not
        give (an order the file has already)."""
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
