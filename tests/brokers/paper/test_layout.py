"""The accounts file's layout: files of earlier layouts converted in place, a later one refused."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from tests.brokers.paper.test_shared_file import buy, kept, placed, rows, streaming
from ult_actors.brokers.paper.batch import Rows, stage_change
from ult_actors.brokers.paper.records import fills_from_arrays
from ult_actors.brokers.paper.store import LAYOUT, PaperStore, reset_store
from ult_actors.errors import ConfigError
from ult_actors.messages import Fill, Order

#: The positions and prices tables of every layout of the shared file.
_ROW_SCHEMA = """
CREATE TABLE positions (account TEXT NOT NULL, symbol TEXT NOT NULL, qty TEXT NOT NULL,
                        avg_price TEXT NOT NULL, realized_pl TEXT NOT NULL,
                        PRIMARY KEY (account, symbol));
CREATE TABLE prices (account TEXT NOT NULL, symbol TEXT NOT NULL, price TEXT NOT NULL,
                     PRIMARY KEY (account, symbol));
"""

#: The first layout of the shared file, as the versions before layouts were numbered wrote it.
_FIRST_SHARED_SCHEMA = """
CREATE TABLE accounts (name TEXT PRIMARY KEY, cash TEXT NOT NULL, created_at INTEGER NOT NULL,
                       next_order INTEGER NOT NULL, next_fill INTEGER NOT NULL);
CREATE TABLE orders (account TEXT NOT NULL, id TEXT NOT NULL, client_order_id TEXT NOT NULL,
                     open INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (account, id),
                     UNIQUE (account, client_order_id));
CREATE INDEX orders_open ON orders(account) WHERE open = 1;
CREATE TABLE fills (account TEXT NOT NULL, fill_id TEXT NOT NULL, order_id TEXT NOT NULL,
                    body BLOB NOT NULL, PRIMARY KEY (account, fill_id));
CREATE INDEX fills_by_order ON fills(account, order_id);
""" + _ROW_SCHEMA

#: Layouts 2 and 3 of the file, as the versions before wrote them (an order's fills in a
#: table of their own).
FILLS_TABLE_SCHEMA = """
CREATE TABLE accounts (name TEXT PRIMARY KEY, cash TEXT NOT NULL, created_at INTEGER NOT NULL,
                       next_order INTEGER NOT NULL, next_fill INTEGER NOT NULL);
CREATE TABLE orders (account TEXT NOT NULL, id TEXT NOT NULL, client_order_id TEXT NOT NULL,
                     open INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (account, id));
CREATE INDEX orders_by_client ON orders(account, client_order_id);
CREATE INDEX orders_open ON orders(account) WHERE open = 1;
CREATE TABLE fills (account TEXT NOT NULL, fill_id TEXT NOT NULL, order_id TEXT NOT NULL,
                    body BLOB NOT NULL);
CREATE INDEX fills_by_order ON fills(account, order_id);
""" + _ROW_SCHEMA

#: The tables with one row per account (and symbol), which every commit writes again.
_ROW_TABLES = ("accounts", "positions", "prices")


def _order(name: str, n: int, *, status: str, filled: int = 0) -> Order:
    return Order(
        id=f"{name}.abc.{n}",
        client_order_id=f"{name}-{n}",
        broker=name,
        symbol="AAPL",
        side="buy",
        qty=Decimal(10),
        type="limit",
        time_in_force="gtc",
        limit_price=Decimal(50),
        status=status,  # type: ignore[arg-type]
        filled_qty=Decimal(filled),
        avg_fill_price=Decimal(50) if filled else None,
        created_at=n,
        updated_at=n,
    )


def _fill(order: Order, n: int, qty: int) -> Fill:
    return Fill(
        fill_id=f"abc.f{n}",
        order_id=order.id,
        client_order_id=order.client_order_id,
        broker=order.broker,
        symbol="AAPL",
        side="buy",
        qty=Decimal(qty),
        price=Decimal(50),
        ts=n,
    )


def _first_shared_file(path: Path) -> dict[str, object]:
    """A file as the first shared layout left it: two accounts, desk with two open orders
    (its 10th placed after its 9th) and an ended one filled in two parts (f9, then f10)."""
    body = msgspec.msgpack.encode
    ended = _order("desk", 2, status="filled", filled=10)
    first, second = _order("desk", 9, status="accepted"), _order("desk", 10, status="accepted")
    fills = [_fill(ended, 9, 4), _fill(ended, 10, 6)]
    db = sqlite3.connect(path)
    db.executescript(_FIRST_SHARED_SCHEMA)
    db.executemany(
        "INSERT INTO accounts VALUES (?, ?, 1000000, 11, 11)", [("desk", "90000"), ("fund", "50")]
    )
    for order, is_open in ((ended, 0), (first, 1), (second, 1)):
        working = {"order": msgspec.to_builtins(order)}
        db.execute(
            "INSERT INTO orders VALUES ('desk', ?, ?, ?, ?)",
            (order.id, order.client_order_id, is_open, body(working)),
        )
    for fill in fills:
        db.execute(
            "INSERT INTO fills VALUES ('desk', ?, ?, ?)", (fill.fill_id, fill.order_id, body(fill))
        )
    db.execute("INSERT INTO positions VALUES ('desk', 'AAPL', '10', '50', '0')")
    db.execute("INSERT INTO prices VALUES ('desk', 'AAPL', '101')")
    db.commit()
    db.close()
    return {"ended": ended, "open": [first, second], "fills": fills}


def _layout(path: Path) -> int:
    return int(rows(path, "PRAGMA user_version")[0][0])


async def test_a_file_of_the_first_shared_layout_is_converted_in_place_losing_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "paper.db"
    before = _first_shared_file(path)
    assert _layout(path) == 0
    desk, fund = placed(tmp_path, "desk"), placed(tmp_path, "fund")
    async with streaming(desk, fund):
        assert (await desk.account()).cash == 90_000 and (await fund.account()).cash == 50
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 10}
        assert desk.price("AAPL") == 101
        assert await desk.open_orders() == before["open"]  # in the order they were placed
        ended = before["ended"]
        assert isinstance(ended, Order)
        assert await desk.get_order(ended.id) == ended
        assert await desk.get_order_by_client_id(ended.client_order_id) == ended
        assert desk.venue.fills(ended.id) == before["fills"]  # oldest first
        newer = await desk.submit(buy("after", 1))
    assert _layout(path) == LAYOUT
    desk = placed(tmp_path, "desk")
    async with streaming(desk):  # reopened in the new layout: the same, and the new order
        assert await desk.open_orders() == before["open"]
        assert desk.venue.fills(ended.id) == before["fills"]
        assert await desk.get_order_by_client_id("after") == newer
        assert [f.qty for f in desk.venue.fills(newer.id)] == [1]
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 11}


async def test_a_change_log_replayed_over_a_file_that_has_its_fills_adds_none_twice(
    tmp_path: Path,
) -> None:
    desk = placed(tmp_path, "desk", starting_cash=Decimal(10**6))
    async with streaming(desk):
        for i in range(5):
            await desk.submit(buy(f"b-{i}", 1))
        exchange = desk._exchange
        assert exchange is not None
        await exchange.writer.durable(exchange.writer.staged_seq)
        # The file has every record, and the log still holds them all: a kill -9 now
        # replays them over the file.
        assert rows(tmp_path / "paper.db", "SELECT sum(nfills) FROM orders") == [(5,)]
        after_crash = kept(tmp_path / "paper.db", "SELECT fills, nfills FROM orders")
    fills = [fills_from_arrays(body, count) for body, count in after_crash]
    assert len(fills) == 5 and all(len(of_order) == 1 for of_order in fills)


def test_a_file_of_a_later_layout_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "paper.db"
    PaperStore(str(path), first_account="desk").close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {LAYOUT + 1}")
    db.close()
    with pytest.raises(ConfigError, match="later version"):
        PaperStore(str(path), first_account="desk")
    with pytest.raises(ConfigError, match="later version"):
        reset_store(str(path), "desk")  # not deleted whole as an unreadable file would be
    assert path.exists() and _layout(path) == LAYOUT + 1


def test_an_accounts_rows_written_by_later_commits_hold_the_latest_state_once(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "paper.db")
    store = PaperStore(path, first_account="p")
    try:
        for n, (qty, price, cash) in enumerate([(1, "10.5", "990"), (3, "11", "968")], start=1):
            rows = Rows()
            change = stage_change(
                "p", {}, set(), [], [("AAPL", Decimal(qty), Decimal("10.75"), Decimal(n))],
                [("AAPL", Decimal(price))], (Decimal(cash), 7, n + 1, n + 1),
            )  # fmt: skip
            rows.add(change, n)
            store.commit(rows)
        snap = store.load("p")
        assert (snap.cash, snap.created_at, snap.next_order, snap.next_fill) == (
            Decimal("968"), 7, 3, 3,
        )  # fmt: skip
        holding = snap.holdings["AAPL"]
        assert (holding.qty, holding.realized_pl) == (Decimal(3), Decimal(2))
        assert snap.prices == {"AAPL": Decimal("11")}
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _ROW_TABLES]
    finally:
        conn.close()
    assert counts == [1, 1, 1]  # one row per key, written over
