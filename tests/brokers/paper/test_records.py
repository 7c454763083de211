"""The paper file's record and bodies: every value back exactly, and older forms still read."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from msgspec.structs import astuple

from tests.brokers.paper.test_layout import FILLS_TABLE_SCHEMA
from tests.brokers.paper.test_shared_file import buy, filled_order, placed, rows, streaming
from ult_actors.brokers.paper.batch import (
    Change,
    DecimalTexts,
    Rows,
    decode_change,
    encode_change,
    stage_change,
)
from ult_actors.brokers.paper.records import WorkingOrder
from ult_actors.brokers.paper.store import LAYOUT, PaperStore
from ult_actors.messages import Fill, Leg, Order

#: ``Order``'s and ``Fill``'s fields in the order the file's bodies hold them (by
#: position, ``records``). A field added at the end with a default goes at the end
#: here too; any other change needs a new body form, or the file's orders misread.
ORDER_FIELDS = (
    "id", "client_order_id", "broker", "symbol", "side", "qty", "type", "time_in_force",
    "status", "limit_price", "stop_price", "extended_hours", "filled_qty", "avg_fill_price",
    "created_at", "updated_at", "reject_reason", "outcome", "origin", "replaces",
    "replaced_by", "leg", "arrival_price", "arrival_source",
)  # fmt: skip
FILL_FIELDS = (
    "fill_id", "order_id", "client_order_id", "broker", "symbol", "side", "qty", "price",
    "commission", "ts", "fees", "fee_currency", "fee_of",
)  # fmt: skip
WORKING_FIELDS = ("order", "triggered", "in_transit", "commission")


def test_the_bodies_fields_keep_their_positions() -> None:
    assert Order.__struct_fields__ == ORDER_FIELDS
    assert Fill.__struct_fields__ == FILL_FIELDS
    assert WorkingOrder.__struct_fields__ == WORKING_FIELDS


def _odd_order() -> WorkingOrder:
    """An order with every field set, its decimals of every shape the venue can make."""
    order = Order(
        id="desk.abc.7", client_order_id="c-7", broker="desk", symbol="AAPL", side="sell",
        qty=Decimal("1.50"), type="stop_limit", time_in_force="gtc", status="partially_filled",
        limit_price=Decimal("99.9999"), stop_price=Decimal("1E+2"), extended_hours=True,
        filled_qty=Decimal("0.75"), avg_fill_price=Decimal("100.123456789012345678901234"),
        created_at=10**18, updated_at=10**18 + 1, reject_reason="none", outcome="definitive",
        origin="client", replaces="c-6", replaced_by="c-8",
        leg=Leg(list_id="L1", contingency="bracket", role="stop_loss", parent_id="c-5", children=("c-9",)), arrival_price=Decimal("-0.000"),
        arrival_source="venue_quote",
    )  # fmt: skip
    return WorkingOrder(order=order, triggered=True, in_transit=True, commission=Decimal("0.0050"))


def _odd_fill(order: Order) -> Fill:
    return Fill(
        fill_id="abc.f3", order_id=order.id, client_order_id=order.client_order_id,
        broker="desk", symbol="AAPL", side="sell", qty=Decimal("0.75"),
        price=Decimal("100.120"), commission=Decimal("0.01"), ts=5,
        fees={"exchange": Decimal("0.003"), "half_spread": Decimal("-1E-7")},
        fee_currency="EUR", fee_of="abc.f2",
    )  # fmt: skip


def _as_handed(change: Change) -> Change:
    return change


def _replayed(change: Change) -> Change:
    """What a replay of the change log reads back of ``change``."""
    read = decode_change(encode_change(change))
    assert isinstance(read, Change)
    return read


#: The writer's thread folds the ``Change`` it is handed; a replay, the log's encode of it.
@pytest.mark.parametrize("way", [_as_handed, _replayed])
def test_every_field_and_decimal_reads_back_from_the_file_exactly(
    tmp_path: Path, way: Callable[[Change], Change]
) -> None:
    working = _odd_order()
    fill = _odd_fill(working.order)
    change = stage_change(
        "desk", {working.order.id: working}, {working.order.id}, [fill],
        [("AAPL", Decimal("-0.75"), Decimal("100.120"), Decimal("12.3400"))],
        [("AAPL", Decimal("101.00"))], (Decimal("99999.99"), 7, 8, 4),
    )  # fmt: skip
    path = str(tmp_path / "paper.db")
    store = PaperStore(path, first_account="desk")
    try:
        folded = Rows()
        folded.add(way(change), 1)
        store.commit(folded)
        assert store.order("desk", working.order.id) == working
        assert store.order_by_client_id("desk", "c-7") == working
        assert store.fills("desk", working.order.id) == [fill]
        snap = store.load("desk")
        assert snap.open_orders == [working]
        # ``==`` on decimals ignores their exponents; the file keeps them too.
        (kept,) = snap.open_orders
        assert str(kept.order.avg_fill_price) == "100.123456789012345678901234"
        assert str(kept.order.arrival_price) == "-0.000"
        assert str(kept.commission) == "0.0050"
        holding = snap.holdings["AAPL"]
        assert [str(holding.qty), str(holding.avg_price), str(holding.realized_pl)] == [
            "-0.75", "100.120", "12.3400",
        ]  # fmt: skip
        assert [str(snap.cash), str(snap.prices["AAPL"])] == ["99999.99", "101.00"]
    finally:
        store.close()


def _msgspec_bodies(change_orders: list[WorkingOrder], fills: list[Fill]) -> list[bytes]:
    """The bodies as msgspec writes them, every decimal made text by msgspec itself."""
    encode = msgspec.msgpack.Encoder().encode
    bodies = [
        encode((astuple(w.order), w.triggered, w.in_transit, w.commission)) for w in change_orders
    ]
    return bodies + [encode(astuple(fill)) for fill in fills]


def test_the_bodies_are_msgspec_s_bytes_whichever_decimals_one_call_or_the_last_shared() -> None:
    # The venue's ``DecimalTexts`` gives a decimal object it saw last its text again: a
    # market order filled whole shares its quantity with its filled quantity and its fill,
    # its fill's price with its average and with the next order's fill.
    texts = DecimalTexts()
    price, zero = Decimal("100.10"), Decimal(0)
    calls: list[tuple[list[WorkingOrder], list[Fill]]] = []
    # A commission is the order's and its fill's one object (``_fill_new``), or two equal
    # ones; the next call's may be equal to the last with another exponent.
    quarter, quarter_longer = Decimal("0.25"), Decimal("0.250")
    commissions = [
        (Decimal("0.00"), Decimal("0.00")),
        (quarter, quarter),
        (quarter_longer, quarter_longer),
    ]
    for i, ((qty, kept_price), (order_commission, fill_commission)) in enumerate(
        zip(
            [(Decimal("3"), price), (Decimal("3"), price), (Decimal("3.0"), Decimal("100.1"))],
            commissions,
            strict=True,
        )
    ):
        order = Order(
            id=f"desk.abc.{i}", client_order_id=f"c-{i}", broker="desk", symbol="AAPL",
            side="buy", qty=qty, type="market", time_in_force="day", status="filled",
            filled_qty=qty, avg_fill_price=kept_price, arrival_price=price,
            arrival_source="venue_quote",
        )  # fmt: skip
        fill = Fill(
            fill_id=f"abc.f{i}", order_id=order.id, client_order_id=order.client_order_id,
            broker="desk", symbol="AAPL", side="buy", qty=qty, price=kept_price,
            commission=fill_commission,
        )  # fmt: skip
        working = WorkingOrder(order=order, commission=order_commission)
        resting = WorkingOrder(
            order=Order(
                id=f"desk.abc.r{i}", client_order_id=f"r-{i}", broker="desk", symbol="AAPL",
                side="sell", qty=Decimal("2"), type="stop_limit", time_in_force="gtc",
                status="accepted", limit_price=Decimal("99.0"), stop_price=Decimal("98"),
                filled_qty=zero,
            ),
        )  # fmt: skip
        calls.append(([working, resting], [fill]))
    calls.append(([_odd_order()], [_odd_fill(_odd_order().order)]))
    for orders, fills in calls:
        change = stage_change(
            "desk", {w.order.id: w for w in orders}, (), fills, [], [], (Decimal(1), 7, 8, 4),
            texts,
        )  # fmt: skip
        staged = [bytes(row[4]) for row in change.orders] + [bytes(row[3]) for row in change.fills]
        assert staged == _msgspec_bodies(orders, fills)
        assert [row[1:3] for row in change.fills] == [(f.fill_id, f.order_id) for f in fills]
        assert [row[2] for row in change.orders] == [w.order.client_order_id for w in orders]


def test_a_holding_s_average_is_its_own_text_unless_the_fill_s_price_object() -> None:
    texts = DecimalTexts()
    price = Decimal("5.0")
    assert texts.price.of(price) == "5.0"
    assert texts.known_price(price) == "5.0"
    assert texts.known_price(Decimal("5.00")) == "5.00"
    assert texts.filled(Decimal(0)) == "0"
    assert texts.qty.of(Decimal("1E+1")) == "1E+1"
    assert texts.filled(Decimal("0.0")) == "0.0"


def _fills_table_file(
    path: Path, layout: int, orders: list[WorkingOrder], fills: list[Fill]
) -> None:
    """A file of ``layout`` (2: bodies maps; 3: arrays) holding ``orders`` (ended) and
    ``fills``, in that order."""
    if layout == 2:
        body: Callable[[object], bytes] = msgspec.msgpack.encode
    else:
        body = lambda item: msgspec.msgpack.encode(  # noqa: E731
            (astuple(item.order), item.triggered, item.in_transit, item.commission)
            if isinstance(item, WorkingOrder)
            else astuple(item)
        )
    db = sqlite3.connect(path)
    db.executescript(FILLS_TABLE_SCHEMA)
    db.execute("INSERT INTO accounts VALUES ('desk', '90000', 1, 9, 9)")
    for working in orders:
        order = working.order
        db.execute(
            "INSERT INTO orders VALUES ('desk', ?, ?, 0, ?)",
            (order.id, order.client_order_id, body(working)),
        )
    for fill in fills:
        db.execute(
            "INSERT INTO fills VALUES ('desk', ?, ?, ?)", (fill.fill_id, fill.order_id, body(fill))
        )
    db.execute(f"PRAGMA user_version = {layout}")
    db.commit()
    db.close()


def _fill(fill_id: str, order: Order, qty: Decimal, ts: int) -> Fill:
    return Fill(
        fill_id=fill_id, order_id=order.id, client_order_id=order.client_order_id,
        broker=order.broker, symbol=order.symbol, side=order.side, qty=qty,
        price=Decimal(100), ts=ts,
    )  # fmt: skip


@pytest.mark.parametrize("layout", [2, 3])
async def test_a_file_of_the_layouts_before_has_its_fills_moved_into_their_orders_rows(
    tmp_path: Path, layout: int
) -> None:
    # Layout 2 (bodies maps) is layout 3 but for the bodies arrays, which a version of
    # layout 2 would misread; layout 4 keeps an order's fills in its row. Both convert,
    # each order's fills oldest first (by when written, not by id), its row as it was.
    path = tmp_path / "paper.db"
    first, second = filled_order("before-1", 1), filled_order("before-2", 2)
    fills = [
        _fill(f"abc.f{n}", order, Decimal(qty), n)
        for n, order, qty in ((10, first, 4), (3, second, 10), (9, first, 6))
    ]
    _fills_table_file(path, layout, [WorkingOrder(order=first), WorkingOrder(order=second)], fills)
    before = rows(path, "SELECT account, id, client_order_id, open, body FROM orders")
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        assert await desk.get_order_by_client_id("before-1") == first
        assert desk.venue.fills(first.id) == [fills[0], fills[2]]
        assert desk.venue.fills(second.id) == [fills[1]]
        after = await desk.submit(buy("after-1", 1))
    assert rows(path, "PRAGMA user_version") == [(LAYOUT,)] and LAYOUT == 5
    assert rows(path, "SELECT name FROM sqlite_master WHERE name LIKE 'fills%'") == []
    assert rows(path, "SELECT name FROM sqlite_master WHERE name = 'orders_by_client'") == []
    now = rows(path, "SELECT account, id, client_order_id, open, body FROM orders ORDER BY rowid")
    assert now[:2] == before
    desk = placed(tmp_path, "desk")
    async with streaming(desk):  # reopened: the same, and the new order's fill beside them
        assert desk.venue.fills(first.id) == [fills[0], fills[2]]
        assert [f.qty for f in desk.venue.fills(after.id)] == [1]


def test_fills_of_an_order_the_file_has_are_appended_to_its_row_without_it(
    tmp_path: Path,
) -> None:
    # The venue records a fill with its order's new state; a record holding only the fill
    # (none is written, but the record allows it) still adds it to the order's row.
    working = _odd_order()
    fill = _odd_fill(working.order)
    later = msgspec.structs.replace(fill, fill_id="abc.f4", qty=Decimal(1))
    path = str(tmp_path / "paper.db")
    store = PaperStore(path, first_account="desk")
    try:
        for n, (orders, fills) in enumerate([({working.order.id: working}, [fill]), ({}, [later])]):
            change = stage_change("desk", orders, (), fills, [], [], (Decimal(1), 7, 8, 4))
            folded = Rows()
            folded.add(change, n + 1)
            store.commit(folded)
        assert store.fills("desk", working.order.id) == [fill, later]
    finally:
        store.close()


#: Layout 4's orders table and index by client order id, as that version made them.
_LAYOUT_4_ORDERS = """
CREATE TABLE orders (account TEXT NOT NULL, id TEXT NOT NULL, client_order_id TEXT NOT NULL,
                     open INTEGER NOT NULL, body BLOB NOT NULL,
                     fills BLOB NOT NULL DEFAULT x'', nfills INTEGER NOT NULL DEFAULT 0,
                     PRIMARY KEY (account, id));
CREATE INDEX orders_by_client ON orders(account, client_order_id);
CREATE INDEX orders_open ON orders(account) WHERE open = 1;
"""


async def test_a_file_of_layout_4_has_its_orders_keyed_and_no_index_by_their_ids(
    tmp_path: Path,
) -> None:
    # Layout 5 keys an order's row by an integer (its rowid in layout 4) and has no index
    # by id or client order id; every order is still found by both, the open one still
    # loads, and writing it again updates its row rather than adding one.
    path = tmp_path / "paper.db"
    ended = filled_order("before-1", 1)
    fill = _fill("abc.f1", ended, Decimal(10), 1)
    resting = msgspec.structs.replace(
        filled_order("before-2", 2), status="accepted", type="limit", time_in_force="gtc",
        limit_price=Decimal(90), filled_qty=Decimal(0), avg_fill_price=None,
    )  # fmt: skip
    _fills_table_file(path, 3, [], [])
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE fills; DROP TABLE orders;" + _LAYOUT_4_ORDERS)
    for order, is_open, fills, nfills in ((ended, 0, astuple(fill), 1), (resting, 1, None, 0)):
        body = msgspec.msgpack.encode((astuple(order), False, False, Decimal(0)))
        db.execute(
            "INSERT INTO orders VALUES ('desk', ?, ?, ?, ?, ?, ?)",
            (order.id, order.client_order_id, is_open, body,
             msgspec.msgpack.encode(fills) if fills else b"", nfills),
        )  # fmt: skip
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    before = rows(path, "SELECT rowid, * FROM orders ORDER BY rowid")
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        assert rows(path, "SELECT * FROM orders ORDER BY key") == before
        assert await desk.get_order_by_client_id("before-1") == ended
        assert await desk.get_order(ended.id) == ended
        assert desk.venue.fills(ended.id) == [fill]
        assert [o.id for o in desk.venue.open_orders()] == [resting.id]
        await desk.cancel(resting.id)
    assert rows(path, "PRAGMA user_version") == [(LAYOUT,)] and LAYOUT == 5
    indexes = rows(path, "SELECT name FROM sqlite_master WHERE type = 'index'")
    assert ("orders_open",) in indexes and len([i for i in indexes if "orders" in i[0]]) == 1
    after = rows(path, "SELECT key, id, open FROM orders ORDER BY key")
    assert after == [(1, ended.id, 0), (2, resting.id, 0)]
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        assert (await desk.get_order_by_client_id("before-2")).status == "canceled"


def _filed(store: PaperStore, account: str, order: Order, seq: int, *, is_open: bool = False) -> None:
    change = stage_change(
        account, {order.id: WorkingOrder(order=order)}, {order.id} if is_open else (), [], [],
        [], (Decimal(1), 7, 8, 4),
    )  # fmt: skip
    folded = Rows()
    folded.add(change, seq)
    store.commit(folded)


def test_orders_filed_after_a_look_up_are_found_by_the_next_one_and_kept_in_one_row(
    tmp_path: Path,
) -> None:
    # The file has no index by id or client order id: the store reads the rows' keys at
    # the first look-up, then those of the rows filed since, each account's apart. An
    # order written open and then ended stays one row.
    path = tmp_path / "paper.db"
    store = PaperStore(str(path), first_account="desk")
    try:
        first = msgspec.structs.replace(filled_order("c-1", 1), status="accepted")
        _filed(store, "desk", first, 1, is_open=True)
        assert store.order_by_client_id("desk", "c-1") == WorkingOrder(order=first)
        assert store.order_by_client_id("desk", "c-2") is None
        second = filled_order("c-2", 2)
        other = msgspec.structs.replace(filled_order("c-1", 3), broker="floor")
        _filed(store, "desk", second, 2)
        _filed(store, "floor", other, 3)
        canceled = msgspec.structs.replace(first, status="canceled")
        _filed(store, "desk", canceled, 4)
        assert store.order_by_client_id("desk", "c-2") == WorkingOrder(order=second)
        assert store.order("desk", second.id) == WorkingOrder(order=second)
        assert store.order_by_client_id("floor", "c-1") == WorkingOrder(order=other)
        assert store.order_by_client_id("desk", "c-1") == WorkingOrder(order=canceled)
        assert store.order("elsewhere", first.id) is None
        assert store.order_by_client_id("elsewhere", "c-1") is None
        later = msgspec.structs.replace(filled_order("c-3", 4), status="accepted")
        _filed(store, "desk", later, 5, is_open=True)
    finally:
        store.close()
    assert rows(path, "SELECT key, account, id, open FROM orders ORDER BY key") == [
        (1, "desk", first.id, 0), (2, "desk", second.id, 0), (3, "floor", other.id, 0),
        (4, "desk", later.id, 1),
    ]  # fmt: skip
    # Reopened: the open order's key is read back; a new order's follows the highest.
    store = PaperStore(str(path), first_account="desk")
    try:
        _filed(store, "desk", msgspec.structs.replace(later, status="filled"), 6)
        _filed(store, "desk", filled_order("c-5", 5), 7)
    finally:
        store.close()
    assert rows(path, "SELECT key, client_order_id, open FROM orders WHERE key > 3") == [
        (4, "c-3", 0), (5, "c-5", 0),
    ]  # fmt: skip
