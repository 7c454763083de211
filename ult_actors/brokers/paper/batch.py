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

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

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
from ult_actors.messages import Fill, Order

__all__ = [
    "CHANGE_TAG",
    "Change",
    "DecimalTexts",
    "OrderKeys",
    "Rows",
    "WorkingOrder",
    "decode_change",
    "encode_change",
    "encode_fill",
    "joined_bodies",
    "stage_change",
]


_encoder = msgspec.msgpack.Encoder()
#: ``Final``: compiled (mypyc), C statics, not a look-up in the module's dict at every use.
_encode: Final = _encoder.encode
_encode_into: Final = _encoder.encode_into
_astuple: Final = astuple

#: A change log record's bytes, ``Change``'s.
encode_change = _encode

#: Where an ``Order``'s and a ``Fill``'s decimals are in their bodies (``astuple``'s order,
#: which the bodies keep: ``records``).
_ORDER_QTY: Final = Order.__struct_fields__.index("qty")
_ORDER_LIMIT: Final = Order.__struct_fields__.index("limit_price")
_ORDER_STOP: Final = Order.__struct_fields__.index("stop_price")
_ORDER_FILLED: Final = Order.__struct_fields__.index("filled_qty")
_ORDER_AVG: Final = Order.__struct_fields__.index("avg_fill_price")
_ORDER_ARRIVAL: Final = Order.__struct_fields__.index("arrival_price")
_FILL_QTY: Final = Fill.__struct_fields__.index("qty")
_FILL_PRICE: Final = Fill.__struct_fields__.index("price")
_FILL_COMMISSION: Final = Fill.__struct_fields__.index("commission")

decode_change = msgspec.msgpack.Decoder(Change | ArrayBodiesChange | MapBodiesChange).decode


class _OrderKey(msgspec.Struct):
    client_order_id: str


class _WorkingKey(msgspec.Struct):
    order: _OrderKey


#: An order row's ``fills`` with none.
_NO_FILLS = bytearray()
#: A body is encoded into this much room, copied, and cut to its length (an order's is
#: ~200 bytes): into an empty ``bytearray`` msgspec grows it step by step, four or five
#: resizes a body (~1,250 instructions more), as the journal's bodies found
#: (``journal.changelog``'s ``_ROOM``). Never written to itself.
_BODY_ROOM: Final = 512
_ROOM: Final = bytearray(_BODY_ROOM)


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
    adapter (encoded into it, not copied from ``bytes``; into a copy of ``_ROOM``)."""
    body = _ROOM.copy()
    _encode_into(value, body)
    return body


def encode_fill(fill: Fill) -> bytearray:
    """The body of ``fill`` as the file holds it: a msgpack array of its fields by position."""
    return _body(_astuple(fill))


class LastText:
    """One kind of decimal's last object and its text: the object is held, so an
    identical object is the same value (a ``Decimal`` never changes) and its text the
    same bytes msgspec writes."""

    def __init__(self) -> None:
        self.value: object = None
        self.text = ""

    # Typed ``object``, not ``Decimal``: compiled, a ``Decimal`` argument is type-checked.
    def of(self, value: object) -> str:
        """The text of ``value``, made only when it is not the last object."""
        if value is not self.value:
            self.value = value
            self.text = str(value)
        return self.text


class DecimalTexts:
    """The text of the last quantities and prices a venue's records carried, by identity.

    A body holds each decimal as its text (``str``, what msgspec writes for a
    ``Decimal``: ~450 instructions each), and one venue call's order and fill
    carry the same objects several times: a market order filled whole has its
    quantity as its ``qty``, its ``filled_qty`` and its fill's ``qty``, and its
    fill's price (kept by the venue until the next tick) as its
    ``avg_fill_price`` and the fill's ``price``, the same object order after
    order, and its fill's commission as its own. Each kind of decimal keeps its last
    object and its text (``LastText``).
    """

    def __init__(self) -> None:
        #: A quantity (an order's, a fill's).
        self.qty = LastText()
        #: An order's filled quantity other than its whole quantity (nothing filled:
        #: every such order's is one ``Decimal(0)``).
        self._filled = LastText()
        #: A fill's price (or an order's average fill price).
        self.price = LastText()
        #: An order's arrival price (the symbol's, held until it moves).
        self.arrival = LastText()
        #: An order's limit or stop price.
        self.terms = LastText()
        #: A commission: an order filled whole in one call carries its fill's commission
        #: object as its own, so the fill's body takes the order's text.
        self.commission = LastText()

    def filled(self, value: object) -> str:
        """The text of an order's filled quantity: its quantity's (filled whole), or
        the last one."""
        qty = self.qty
        if value is qty.value:
            return qty.text
        return self._filled.of(value)

    def known_price(self, value: object) -> str:
        """The text of a price that may be the last fill's (a holding's average): the
        fill's kept, nothing else."""
        price = self.price
        if value is price.value:
            return price.text
        return str(value)


def _order_body(parts: tuple[Any, ...], fields: list[Any], texts: DecimalTexts) -> bytearray:
    """The body of a ``WorkingOrder`` (``parts``: its ``astuple``) as the file holds it:
    ``[order, triggered, in_transit, commission]``, the order (``fields``: its
    ``astuple`` as a list, changed here) a msgpack array of its fields by position;
    its decimals as their text (``texts``), the bytes msgspec writes for them."""
    fields[_ORDER_QTY] = texts.qty.of(fields[_ORDER_QTY])
    fields[_ORDER_FILLED] = texts.filled(fields[_ORDER_FILLED])
    value = fields[_ORDER_AVG]
    if value is not None:
        fields[_ORDER_AVG] = texts.price.of(value)
    value = fields[_ORDER_ARRIVAL]
    if value is not None:
        fields[_ORDER_ARRIVAL] = texts.arrival.of(value)
    value = fields[_ORDER_LIMIT]
    if value is not None:
        fields[_ORDER_LIMIT] = texts.terms.of(value)
    value = fields[_ORDER_STOP]
    if value is not None:
        fields[_ORDER_STOP] = texts.terms.of(value)
    return _body((fields, parts[1], parts[2], texts.commission.of(parts[3])))


def _fill_body(fields: list[Any], texts: DecimalTexts) -> bytearray:
    """``encode_fill`` of the fill whose fields (``astuple``'s, as a list, changed here)
    are ``fields``, its quantity and price as their text (``texts``)."""
    fields[_FILL_QTY] = texts.qty.of(fields[_FILL_QTY])
    fields[_FILL_PRICE] = texts.price.of(fields[_FILL_PRICE])
    fields[_FILL_COMMISSION] = texts.commission.of(fields[_FILL_COMMISSION])
    return _body(fields)


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
    texts: DecimalTexts | None = None,
) -> Change:
    """The record of one venue call: the orders it changed (by id; those whose id is in
    ``open_orders`` are open), its fills, holdings (``(symbol, qty, avg_price,
    realized_pl)``) and prices, and ``counters`` (cash, created_at, next_order,
    next_fill), as the file's rows. The trio thread builds nothing else for the file.
    ``texts``: the venue's ``DecimalTexts`` (the last call's decimals' texts)."""
    if texts is None:
        texts = DecimalTexts()
    order_rows = []
    for oid, w in orders.items():
        # One C call for each one's fields (a field read of a Struct is ~110 instructions
        # compiled): the order's id and client order id are its first two.
        parts = _astuple(w)
        fields = list(_astuple(parts[0]))
        coid = fields[1]
        body = _order_body(parts, fields, texts)
        order_rows.append((account, oid, coid, int(oid in open_orders), body))
    fill_rows = []
    for fill in fills:
        fields = list(_astuple(fill))
        fill_id, order_id = fields[0], fields[1]
        fill_rows.append((account, fill_id, order_id, _fill_body(fields, texts)))
    cash, created_at, next_order, next_fill = counters
    return Change(
        order_rows,
        fill_rows,
        [
            (account, s, str(qty), texts.known_price(avg), str(pl))
            for s, qty, avg, pl in holdings
        ],
        [(account, s, str(price)) for s, price in prices],
        (account, str(cash), created_at, next_order, next_fill),
    )


class OrderKeys:
    """The keys the writer gives orders' rows: the open orders' kept (a venue records an
    order again only while it is open: ``venue._changed`` is only ever handed an open
    or new one), every other order's a new one, the next after the highest.

    Here, beside ``Rows``, not in ``paper.store`` (which reads them from the file): so
    that ``Rows.orders`` calls ``key_of`` compiled, not through a bound method.
    """

    def __init__(self, highest: int, kept: dict[tuple[Any, ...], int]) -> None:
        """Keys after ``highest``; ``kept``: the open orders' by ``(account, id)``."""
        self.next = highest + 1
        self.kept = kept

    def key(self, account: str, order_id: str, is_open: int) -> int:
        """The key of the row of ``account``'s order ``order_id`` (``is_open``: as written
        now), kept for its next state while it is open."""
        return self.key_of((account, order_id), is_open)

    def key_of(self, pair: tuple[Any, ...], is_open: int) -> int:
        """``key`` of the order ``pair`` (``(account, id)``)."""
        kept = self.kept
        key = kept.get(pair)
        if key is None:
            key = self.next
            self.next = key + 1
            if is_open:
                kept[pair] = key
        elif not is_open:
            del kept[pair]
        return key


@dataclass
class Rows:
    """What one transaction writes: records folded in order, the last state of a key winning.

    An order's fills go into its own row (the file's layout 4, ``paper.store``):
    ``orders()`` gives each order's row with the fills folded in since, in the
    order they came, to be appended to those its row has.
    """

    #: The last record folded in (the file has every record up to it once committed).
    seq: int = 0
    # Keyed by ``(account, id)`` typed as boxed tuples: compiled, a ``tuple[str, str]``
    # would be unpacked from each key read and a tuple made anew for each look-up.
    _orders: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)
    #: Each order's new fills' rows (``(account, fill_id, order_id, body)``), oldest first.
    _fills: dict[tuple[Any, ...], list[tuple[Any, ...]]] = field(default_factory=dict)
    _holdings: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)
    _prices: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)
    _accounts: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def add(self, change: Change | ArrayBodiesChange, seq: int = 0) -> None:
        """Fold ``change`` (record ``seq``) in after what is here (its states of a key win)."""
        self.seq = seq
        if not isinstance(change, Change):
            self._add_earlier(change)
            return
        # Its rows are the file's, kept as they are. Read as lists of boxed tuples:
        # compiled, a row typed by its items would be unboxed (each item's type
        # checked) and boxed anew. Its fields in one C call (a field read of a Struct
        # is ~110 instructions compiled).
        parts = _astuple(change)
        orders: list[tuple[Any, ...]] = parts[0]
        fills: list[tuple[Any, ...]] = parts[1]
        positions: list[tuple[Any, ...]] = parts[2]
        prices: list[tuple[Any, ...]] = parts[3]
        account: tuple[Any, ...] = parts[4]
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

    def orders(self, keys: OrderKeys) -> tuple[list[Any], list[Any]]:
        """Each order's row as two runs of its columns (``ManyRowInsert.run_columns``'s):
        ``(id, client_order_id, open, body, fills, nfills, key)`` of every order, one after
        the other, then each one's ``account``; ``fills`` its new fills' bodies one after the
        other (``nfills`` of them), ``key`` its row's (``keys``: the file's, ``store``).

        The columns straight into the statement's lists, not a tuple a row that the
        statement then copies; the account last, so that a statement binds it once for
        rows of one account (a text bound is a copy SQLite makes, ~800 instructions)."""
        fills = self._fills
        own: list[Any] = []
        accounts: list[Any] = []
        for pair, row in self._orders.items():
            is_open = row[3]
            at = keys.key_of(pair, is_open)
            own.append(row[1])
            own.append(row[2])
            own.append(is_open)
            own.append(row[4])
            new = fills.get(pair)
            if new is None:
                own.append(_NO_FILLS)
                own.append(0)
            else:
                del fills[pair]
                own.append(joined_bodies(new))
                own.append(len(new))
            own.append(at)
            accounts.append(row[0])
        return own, accounts

    def fills(self) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
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
