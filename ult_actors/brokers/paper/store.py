"""Where the paper accounts live between runs: one SQLite file, every account keyed by name.

All paper connections of a service share one file (``<state_dir>/paper.db``
unless ``state_path`` names another); each account's rows carry its
connection name. This is the simulated *venue's* memory (cash, positions,
orders, fills, last prices), not the service's order journal: WAL with
``synchronous=NORMAL``, so a committed write survives a process crash and a
power cut may lose the last ones.

The venues work in memory; what they change reaches the file in batches
on the writer's thread (``paper.writer``): each venue call's changes are one
record, written to the change log at once (``paper.changelog``), folded
many at a time into ``Rows`` and committed here by ``PaperStore.commit``. Opening the file
replays the log a crash left. Reads of what a venue no longer holds (orders
that ended, fills, an account not opened yet) use a second connection on
the trio thread; they see committed rows only, which is why the venue keeps
what it changed in memory until the file has it.

Upgrading from one file per connection (``paper-<name>.db``, the layout
before the shared file): when the default file is opened, every old file
next to it is imported once under its connection name and renamed
``paper-<name>.db.imported``; a file named by ``state_path`` that still has
the old layout is converted in place for the first connection that opens
it (before, only one connection could use a file).

The file's layout is numbered (``LAYOUT``, kept as ``PRAGMA user_version``):
opening a file of an earlier layout converts it in place in one transaction,
and a file of a later one is refused rather than misread.

While the file is open the store holds an exclusive ``flock`` on
``<path>.lock``, so a second service on the same state directory, or
``ult paper reset`` under a running service, is refused instead of
corrupting the accounts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from ult_actors.brokers.paper import changelog
from ult_actors.brokers.paper.account import PaperHolding
from ult_actors.brokers.paper.batch import OrderKeys, Rows, WorkingOrder, encode_fill, joined_bodies
from ult_actors.brokers.paper.records import (
    fill_from_array,
    fills_from_arrays,
    working_from_array,
)
from ult_actors.brokers.paper.settings import DEFAULT_FILE
from ult_actors.errors import BrokerUnavailable, ConfigError
from ult_actors.messages import Fill
from ult_actors.sqlite_insert import ManyRowInsert

MEMORY = ":memory:"
#: What an old per-connection file is renamed to once imported.
IMPORTED_SUFFIX = ".imported"
_LEGACY_PREFIX = "paper-"

#: The file's layout as this version writes it (``PRAGMA user_version``). Files of
#: earlier layouts are converted when opened (``_upgrade``): 0 is either the
#: per-connection layout (a ``meta`` table, one account) or the first shared one,
#: whose orders were unique by client order id and whose fills by fill id too: an
#: order and its fill wrote six B-trees, three of them checked for a duplicate first.
#: Layout 2 keeps only the keys the venue's reads need: orders by id (the writer's
#: upsert), by client order id and open ones; fills by their order. The venue
#: refuses a used client order id itself, and a fill can only come twice from a
#: replayed change log, which skips the fills the file has (``_replay_log``).
#: Layout 3 is layout 2 whose bodies may be msgpack arrays (``batch.stage_change``'s),
#: which a version of layout 2 would misread: a file of layout 2 becomes 3 as it is.
#: Layout 4 keeps an order's fills in its own row (``fills``: their bodies, arrays,
#: one after the other; ``nfills``: how many), appended to as the order fills, and has
#: no ``fills`` table: an order and its fill write three B-trees, not five (the table's
#: row and its index entry were a third of the writer's instructions an order). A file
#: of layout 3 is converted when opened (``_fills_into_orders``), in one transaction.
#: Layout 5 keys an order's row by an integer (``key``, its rowid) that the writer
#: hands out, not by ``(account, id)``, and has no ``orders_by_client``: a filled order
#: is one B-tree write (its row) where it was three (its row, its key's entry and its
#: client order id's: ~13k of the fold's ~35k instructions an order, pure Python).
#: The writer keeps the keys of the open orders, the only ones a venue records again
#: (``batch.OrderKeys``); a look-up of an order the venue no longer holds, by id or by client
#: order id (after a lost reply, a cancel of an ended order: rare), reads the rows'
#: keys once and then only those filed since (``_Filed``). A file of layout 4 is
#: converted when opened, each row's key its rowid (``_keyed_orders``).
#: An earlier version of the service cannot open a file of layout 4 or 5.
LAYOUT = 5
#: The layout whose file is layout 3's as it is (its bodies maps or JSON, read alike).
_MAP_BODIES_LAYOUT = 2
#: The layout before an order's fills moved into its row.
_FILLS_TABLE_LAYOUT = 3
#: The layout before orders were keyed by an integer.
_ID_KEYED_LAYOUT = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    cash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    next_order INTEGER NOT NULL,
    next_fill INTEGER NOT NULL
);
CREATE TABLE orders (
    account TEXT NOT NULL,
    id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    open INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE INDEX orders_by_client ON orders(account, client_order_id);
CREATE INDEX orders_open ON orders(account) WHERE open = 1;
CREATE TABLE fills (
    account TEXT NOT NULL,
    fill_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX fills_by_order ON fills(account, order_id);
CREATE TABLE IF NOT EXISTS positions (
    account TEXT NOT NULL,
    symbol TEXT NOT NULL,
    qty TEXT NOT NULL,
    avg_price TEXT NOT NULL,
    realized_pl TEXT NOT NULL,
    PRIMARY KEY (account, symbol)
);
CREATE TABLE IF NOT EXISTS prices (
    account TEXT NOT NULL,
    symbol TEXT NOT NULL,
    price TEXT NOT NULL,
    PRIMARY KEY (account, symbol)
);
"""
#: Layout 5's orders (``_keyed_orders``).
_KEYED_ORDERS = """
CREATE TABLE orders (
    key INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    open INTEGER NOT NULL,
    body BLOB NOT NULL,
    fills BLOB NOT NULL DEFAULT x'',
    nfills INTEGER NOT NULL DEFAULT 0
)"""
_TABLES = ("accounts", "orders", "positions", "prices")
#: The tables layout 2 keys otherwise than the first shared layout, and their columns.
_REKEYED = {
    "orders": "account, id, client_order_id, open, body",
    "fills": "account, fill_id, order_id, body",
}
#: The named indexes of every layout (an index keeps its name when its table is renamed).
_INDEXES = ("orders_by_client", "orders_open", "fills_by_order")
_OLD_TABLES = ("meta", "orders", "fills", "positions", "prices")


def _upsert(table: str, key: tuple[str, ...], rest: tuple[str, ...]) -> ManyRowInsert:
    """An insert of rows of ``key + rest`` whose key may be taken: then the row is updated
    in place (``rest``), not replaced. ``INSERT OR REPLACE``
    deletes the row and its key's index entry and inserts both anew, where an update
    rewrites the row alone (its key is the same); every commit writes these rows."""
    columns = key + rest
    sets = ", ".join(f"{c} = excluded.{c}" for c in rest)
    return ManyRowInsert(
        f"INSERT INTO {table} ({', '.join(columns)})",
        len(columns),
        f" ON CONFLICT({', '.join(key)}) DO UPDATE SET {sets}",
    )


#: An order's row by its key, its new fills appended to those it has (``||`` makes text
#: of two blobs, with their bytes as they are: cast back to a blob). Its account last,
#: bound once a statement when its rows share it (``Rows.orders``).
_UPSERT_ORDER = ManyRowInsert(
    "INSERT INTO orders (id, client_order_id, open, body, fills, nfills, key, account)",
    8,
    " ON CONFLICT(key) DO UPDATE SET open = excluded.open, body = excluded.body,"
    " fills = CAST(fills || excluded.fills AS BLOB), nfills = nfills + excluded.nfills",
    shared=1,
)
#: New fills of the order of a rowid (``key`` in layout 5), whose row the commit does
#: not write (no version of the venue records a fill without its order's new state; a
#: record may, in principle), or of a file of an earlier layout being converted.
_APPEND_FILLS = (
    "UPDATE orders SET fills = CAST(fills || ? AS BLOB), nfills = nfills + ? WHERE rowid = ?"
)
_UPSERT_POSITION = _upsert("positions", ("account", "symbol"), ("qty", "avg_price", "realized_pl"))
_UPSERT_PRICE = _upsert("prices", ("account", "symbol"), ("price",))
_UPSERT_ACCOUNT = _upsert("accounts", ("name",), ("cash", "created_at", "next_order", "next_fill"))


@dataclass
class PaperSnapshot:
    """One account as the file has it (``cash=None``: the file has no such account)."""

    cash: Decimal | None = None
    #: When the account was first used (ns); ``None`` for a new account.
    created_at: int | None = None
    next_order: int = 1
    next_fill: int = 1
    open_orders: list[WorkingOrder] = field(default_factory=list)
    holdings: dict[str, PaperHolding] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    #: Every client order id the account has used (refused again as duplicates).
    client_ids: set[str] = field(default_factory=set)


_order_from_json = msgspec.json.Decoder(WorkingOrder).decode
_order_from_msgpack = msgspec.msgpack.Decoder(WorkingOrder).decode
_fill_from_json = msgspec.json.Decoder(Fill).decode
_fill_from_msgpack = msgspec.msgpack.Decoder(Fill).decode
#: How a body of an earlier version begins (JSON, always an object); a msgpack map never does.
_JSON_OBJECT = b"{"


def _is_array(body: bytes) -> bool:
    """Whether ``body`` is a msgpack array (this version's; earlier ones wrote maps)."""
    first = body[0]
    return 0x90 <= first <= 0x9F or first == 0xDC or first == 0xDD


def order_body(body: bytes | str) -> WorkingOrder:
    """The order an ``orders`` row's body holds (a msgpack array; in rows of earlier
    versions a msgpack map or JSON)."""
    if isinstance(body, str) or body[:1] == _JSON_OBJECT:
        return _order_from_json(body)
    if _is_array(body):
        return working_from_array(body)
    return _order_from_msgpack(body)


def fill_body(body: bytes | str) -> Fill:
    """The fill a ``fills`` row's body holds (a msgpack array; in rows of earlier
    versions a msgpack map or JSON)."""
    if isinstance(body, str) or body[:1] == _JSON_OBJECT:
        return _fill_from_json(body)
    if _is_array(body):
        return fill_from_array(body)
    return _fill_from_msgpack(body)


def _keys(db: sqlite3.Connection, *, every: bool = False) -> OrderKeys:
    """The keys the writer gives orders' rows (``batch.OrderKeys``), with those of the
    file's open orders (``every``: of all its orders, for a replay, whose records may
    hold orders the file has already, ended)."""
    (highest,) = db.execute("SELECT max(key) FROM orders").fetchone()
    where = "" if every else " WHERE open = 1"
    kept: dict[tuple[Any, ...], int] = {
        (account, oid): key
        for key, account, oid in db.execute(f"SELECT key, account, id FROM orders{where}")
    }
    return OrderKeys(highest or 0, kept)


def _filed_key(
    db: sqlite3.Connection, keys: OrderKeys, account: str, order_id: str
) -> int | None:
    """The key of an order the file has, found however it is not kept (no venue records
    an ended order's fill without it: not worth an index)."""
    key = keys.kept.get((account, order_id))
    if key is not None:
        return key
    row = db.execute(
        "SELECT key FROM orders WHERE account = ? AND id = ? ORDER BY key DESC LIMIT 1",
        (account, order_id),
    ).fetchone()
    return None if row is None else int(row[0])


class _Filed:
    """The file's orders' keys by account and id and by client order id, for a look-up
    of an order the venue no longer holds (the file has no index of either: layout 5).

    Read from the file at the first look-up, then, at each one after, from the rows
    filed since (keys grow: the writer hands them out in order and updates a row in
    place; nothing deletes one while the file is open), so a look-up reads the rows
    of the orders filed since the one before, not the whole file.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, dict[str, int]] = {}
        self._by_client: dict[str, dict[str, int]] = {}
        #: The highest key read.
        self._through = 0

    def _read(self, db: sqlite3.Connection) -> None:
        by_id, by_client = self._by_id, self._by_client
        for key, account, oid, coid in db.execute(
            "SELECT key, account, id, client_order_id FROM orders WHERE key > ? ORDER BY key",
            (self._through,),
        ):
            if account not in by_id:
                by_id[account] = {}
                by_client[account] = {}
            by_id[account][oid] = key
            by_client[account][coid] = key
            self._through = key

    def by_id(self, db: sqlite3.Connection, account: str, order_id: str) -> int | None:
        """The key of ``account``'s order ``order_id`` (``None``: the file has none)."""
        self._read(db)
        return self._by_id.get(account, {}).get(order_id)

    def by_client(self, db: sqlite3.Connection, account: str, client_order_id: str) -> int | None:
        """The key of ``account``'s order ``client_order_id`` (``None``: the file has none)."""
        self._read(db)
        return self._by_client.get(account, {}).get(client_order_id)


def _lock_path(path: str) -> Path:
    return Path(f"{path}.lock")


class PaperStore:
    """The open accounts file: ``commit`` on the writer's thread, reads on the trio thread.

    ``":memory:"`` is no file at all: accounts that live in their venues only.
    """

    def __init__(self, path: str | None, *, first_account: str) -> None:
        """Open (or create) the file, upgrading an old layout (an old single-account
        file becomes the account ``first_account``) and replaying the change log."""
        self.path = path or MEMORY
        self._lock_fd: int | None = None
        self._write: sqlite3.Connection | None = None
        self._read: sqlite3.Connection | None = None
        #: Accounts the file has (new ones join as their venue first stages a change).
        self.accounts: set[str] = set()
        #: The writer's keys (read once the file is open; again after a failed commit).
        self._keys: OrderKeys | None = None
        self._filed = _Filed()
        if self.path == MEMORY:
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise unusable_account(self.path, exc) from None
        self._lock_fd = _acquire_lock(self.path)
        try:
            self._write = _connect(self.path)
            self._read = _connect(self.path)
            _upgrade(self._write, self.path, first_account)
            if Path(self.path).name == DEFAULT_FILE:
                _import_old_files(self._write, Path(self.path).parent)
            try:
                _replay_log(self._write, self.path)
            except sqlite3.OperationalError as exc:  # a full disk, say: worth retrying
                raise BrokerUnavailable(
                    f"paper account file {self.path} could not take in its change log ({exc})"
                ) from None
            self._keys = _keys(self._write)
            self.accounts = {name for (name,) in self._read.execute("SELECT name FROM accounts")}
        except (sqlite3.Error, OSError) as exc:  # OSError: a log segment it may not read or delete
            self.close()
            raise unusable_account(self.path, exc) from None
        except BaseException:
            self.close()
            raise

    @property
    def in_memory(self) -> bool:
        """Whether there is no file: the venues keep everything themselves."""
        return self.path == MEMORY

    def close(self) -> None:
        """Close the file and release the lock; safe to call twice."""
        for attr in ("_read", "_write"):
            conn = getattr(self, attr)
            setattr(self, attr, None)
            if conn is not None:
                conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    # -- writing (the writer's thread) ------------------------------------------

    def commit(self, rows: Rows) -> None:
        """Write ``rows`` in one transaction."""
        db = self._write
        assert db is not None
        keys = self._keys or _keys(db)
        self._keys = None  # until committed: a rolled-back commit's keys were handed out
        _commit(db, rows, keys)
        self._keys = keys

    # -- reads (the trio thread; committed rows only) ------------------------------

    def load(self, account: str) -> PaperSnapshot:
        """The saved account, or an empty snapshot (``cash=None``) for a new one."""
        snap = PaperSnapshot()
        if self.in_memory:
            return snap
        db = self._reader()
        row = db.execute(
            "SELECT cash, created_at, next_order, next_fill FROM accounts WHERE name = ?",
            (account,),
        ).fetchone()
        if row is None:
            return snap
        snap.cash, snap.created_at = Decimal(row[0]), int(row[1])
        snap.next_order, snap.next_fill = int(row[2]), int(row[3])
        snap.open_orders = [
            order_body(body)
            for (body,) in db.execute(
                "SELECT body FROM orders WHERE account = ? AND open = 1 ORDER BY rowid", (account,)
            )
        ]
        snap.holdings = {
            symbol: PaperHolding(Decimal(qty), Decimal(avg), Decimal(pl))
            for symbol, qty, avg, pl in db.execute(
                "SELECT symbol, qty, avg_price, realized_pl FROM positions WHERE account = ?",
                (account,),
            )
        }
        snap.prices = {
            s: Decimal(p)
            for s, p in db.execute("SELECT symbol, price FROM prices WHERE account = ?", (account,))
        }
        snap.client_ids = {
            coid
            for (coid,) in db.execute(
                "SELECT client_order_id FROM orders WHERE account = ?", (account,)
            )
        }
        return snap

    def order(self, account: str, order_id: str) -> WorkingOrder | None:
        """The order ``order_id`` as the file has it (``None``: not in the file)."""
        if self.in_memory:
            return None
        db = self._reader()
        return _order_of(db, self._filed.by_id(db, account, order_id))

    def order_by_client_id(self, account: str, client_order_id: str) -> WorkingOrder | None:
        """The order with ``client_order_id`` as the file has it (``None``: not in the file)."""
        if self.in_memory:
            return None
        db = self._reader()
        return _order_of(db, self._filed.by_client(db, account, client_order_id))

    def fills(self, account: str, order_id: str) -> list[Fill]:
        """The executions of ``order_id`` in the file, oldest first."""
        if self.in_memory:
            return []
        db = self._reader()
        key = self._filed.by_id(db, account, order_id)
        if key is None:
            return []
        row = db.execute("SELECT fills, nfills FROM orders WHERE key = ?", (key,)).fetchone()
        return fills_from_arrays(row[0], row[1]) if row else []

    def _reader(self) -> sqlite3.Connection:
        if self._read is None:
            raise BrokerUnavailable(f"paper account file {self.path} is closed")
        return self._read


def _order_of(db: sqlite3.Connection, key: int | None) -> WorkingOrder | None:
    """The order of the row ``key`` (``None``: none)."""
    if key is None:
        return None
    row = db.execute("SELECT body FROM orders WHERE key = ?", (key,)).fetchone()
    return order_body(row[0]) if row else None


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    # Freed space is not zeroed (Debian's SQLite zeroes it by default; the journal's file
    # turns it off for the same reason): instructions per order nobody needs.
    db.execute("PRAGMA secure_delete = OFF")
    return db


def _commit(
    db: sqlite3.Connection, rows: Rows, keys: OrderKeys, *, replayed: bool = False
) -> None:
    """Write ``rows`` in one transaction, orders keyed by ``keys`` (``replayed``: from a
    change log the file may have taken in already, in part: the fills it has are
    skipped)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if replayed:
            _skip_filed(db, rows.fills(), keys)
        # Many rows a statement (``ManyRowInsert``): the loop waits for this thread's
        # GIL once a statement, not once a row.
        _UPSERT_ORDER.run_columns(db, *rows.orders(keys))
        for (account, order_id), loose in rows.fills().items():
            key = _filed_key(db, keys, account, order_id) if loose else None
            if key is not None:
                db.execute(_APPEND_FILLS, (joined_bodies(loose), len(loose), key))
        _UPSERT_POSITION.run(db, list(rows.positions()))
        _UPSERT_PRICE.run(db, list(rows.prices()))
        _UPSERT_ACCOUNT.run(db, list(rows.accounts()))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _skip_filed(
    db: sqlite3.Connection, fills: dict[tuple[Any, ...], list[tuple[Any, ...]]], keys: OrderKeys
) -> None:
    """Drop from ``fills`` (``Rows.fills()``) those the file has already."""
    for (account, order_id), new in fills.items():
        key = _filed_key(db, keys, account, order_id)
        if key is None:
            continue
        row = db.execute("SELECT fills, nfills FROM orders WHERE key = ?", (key,)).fetchone()
        if row is not None and row[1]:
            filed = {fill.fill_id for fill in fills_from_arrays(row[0], row[1])}
            new[:] = [fill for fill in new if fill[1] not in filed]


def _replay_log(db: sqlite3.Connection, path: str) -> None:
    """Fold what the change log has (a crash left it) into the file, then delete the log."""
    replayed = Rows()
    for change in changelog.read(path):
        replayed.add(change)
    if replayed:
        _commit(db, replayed, _keys(db, every=True), replayed=True)
    changelog.remove(path)


def _tables(db: sqlite3.Connection, schema: str = "main") -> set[str]:
    return {
        name
        for (name,) in db.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")
    }


def _is_old_layout(tables: set[str]) -> bool:
    return "meta" in tables and "accounts" not in tables


def _layout(db: sqlite3.Connection, path: str) -> int:
    """The file's layout; ``ConfigError`` for one of a later version than this."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > LAYOUT:
        raise ConfigError(
            f"paper account file {path} has layout {version}, written by a later version"
            f" of ult (this one knows layouts up to {LAYOUT}); upgrade ult, or start afresh"
            " with `ult paper reset` (all accounts)"
        )
    return int(version)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One transaction on ``db`` around the block: committed, or rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _upgrade(db: sqlite3.Connection, path: str, account: str) -> None:
    """Bring the file to ``LAYOUT`` in one transaction: create it, or convert an earlier
    layout in place (a file of the per-connection layout becomes ``account``)."""
    version = _layout(db, path)
    if version == LAYOUT:
        return
    if version < _ID_KEYED_LAYOUT:
        if version == _MAP_BODIES_LAYOUT:
            db.execute(f"PRAGMA user_version = {_FILLS_TABLE_LAYOUT}")
        elif version != _FILLS_TABLE_LAYOUT:
            _to_fills_table_layout(db, account)
        _fills_into_orders(db)
    _keyed_orders(db)


def _to_fills_table_layout(db: sqlite3.Connection, account: str) -> None:
    """Bring a file of layout 0 (or none: a new file) to layout 3, in one transaction."""
    tables = _tables(db)
    old_layout = _is_old_layout(tables)
    # Set aside, then copied into the new tables (all of them for a new file are new).
    moved = _OLD_TABLES if old_layout else tuple(t for t in _REKEYED if t in tables)
    with _transaction(db):
        for index in _INDEXES:
            db.execute(f"DROP INDEX IF EXISTS {index}")
        for table in moved:
            db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        if old_layout:
            _copy_old_account(db, "main", "old_", account, fills_table=True)
        else:
            for table in moved:
                columns = _REKEYED[table]
                db.execute(
                    f"INSERT INTO {table} ({columns})"
                    f" SELECT {columns} FROM old_{table} ORDER BY rowid"
                )
        for table in moved:
            db.execute(f"DROP TABLE old_{table}")
        db.execute(f"PRAGMA user_version = {_FILLS_TABLE_LAYOUT}")


def _fills_into_orders(db: sqlite3.Connection) -> None:
    """Convert a file of layout 3 to layout 4 in one transaction: each order's fills
    (their bodies as arrays, whatever form the file had them in) into its row, then the
    ``fills`` table dropped. A fill whose order the file lacks has no row to go to (no
    version writes one: a venue call records an order's fill with its order)."""
    with _transaction(db):
        db.execute("ALTER TABLE orders ADD COLUMN fills BLOB NOT NULL DEFAULT x''")
        db.execute("ALTER TABLE orders ADD COLUMN nfills INTEGER NOT NULL DEFAULT 0")
        _append_fills(db, db.execute("SELECT account, order_id, body FROM fills ORDER BY rowid"))
        db.execute("DROP INDEX IF EXISTS fills_by_order")
        db.execute("DROP TABLE fills")
        db.execute(f"PRAGMA user_version = {_ID_KEYED_LAYOUT}")


def _keyed_orders(db: sqlite3.Connection) -> None:
    """Convert a file of layout 4 to layout 5 in one transaction: its orders into a table
    keyed by an integer (each row's its rowid: the open orders keep their order), with
    no index by ``(account, id)`` or client order id."""
    with _transaction(db):
        for index in _INDEXES:
            db.execute(f"DROP INDEX IF EXISTS {index}")
        db.execute("ALTER TABLE orders RENAME TO old_orders")
        db.execute(_KEYED_ORDERS)
        db.execute(
            "INSERT INTO orders (key, account, id, client_order_id, open, body, fills, nfills)"
            " SELECT rowid, account, id, client_order_id, open, body, fills, nfills"
            " FROM old_orders ORDER BY rowid"
        )
        db.execute("DROP TABLE old_orders")
        db.execute("CREATE INDEX orders_open ON orders(account) WHERE open = 1")
        db.execute(f"PRAGMA user_version = {LAYOUT}")


def _append_fills(db: sqlite3.Connection, fills: Iterable[tuple[str, str, Any]]) -> None:
    """Append fills ``(account, order_id, body)`` of a file of an earlier layout, oldest
    first, to their orders' rows, each body made an array (``batch.encode_fill``)."""
    by_order: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for account, order_id, body in fills:
        array = bytearray(body) if _is_array(body) else encode_fill(fill_body(body))
        by_order.setdefault((account, order_id), []).append((account, "", order_id, array))
    # By rowid: a file of layout 5 has no index by ``(account, id)``.
    rowids = {(account, oid): rowid for rowid, account, oid in db.execute(
        "SELECT rowid, account, id FROM main.orders"
    )}  # fmt: skip
    db.executemany(
        _APPEND_FILLS,
        [
            (joined_bodies(f), len(f), rowids[pair])
            for pair, f in by_order.items()
            if pair in rowids
        ],
    )


def _copy_old_account(
    db: sqlite3.Connection, schema: str, prefix: str, account: str, *, fills_table: bool
) -> None:
    """Copy the one account of an old-layout file (tables ``<schema>.<prefix>meta`` ...)
    into a file with a ``fills`` table (``fills_table``: layout 3) or of this layout."""
    src = f"{schema}.{prefix}"
    meta = dict(db.execute(f"SELECT key, value FROM {src}meta").fetchall())
    if "cash" not in meta:
        return  # never used: nothing to keep
    db.execute(
        _UPSERT_ACCOUNT.sql(1),
        (
            account,
            meta["cash"],
            int(meta.get("created_at", 0)),
            int(meta.get("next_order", 1)),
            int(meta.get("next_fill", 1)),
        ),
    )
    db.execute(
        "INSERT INTO main.orders (account, id, client_order_id, open, body)"
        f" SELECT ?, id, client_order_id, open, body FROM {src}orders ORDER BY rowid",
        (account,),
    )
    if fills_table:
        db.execute(
            "INSERT INTO main.fills (account, fill_id, order_id, body)"
            f" SELECT ?, fill_id, order_id, body FROM {src}fills ORDER BY rowid",
            (account,),
        )
    else:
        _append_fills(
            db,
            db.execute(f"SELECT ?, order_id, body FROM {src}fills ORDER BY rowid", (account,)),
        )
    db.execute(
        "INSERT INTO main.positions (account, symbol, qty, avg_price, realized_pl)"
        f" SELECT ?, symbol, qty, avg_price, realized_pl FROM {src}positions",
        (account,),
    )
    db.execute(
        "INSERT INTO main.prices (account, symbol, price)"
        f" SELECT ?, symbol, price FROM {src}prices",
        (account,),
    )


def old_file(directory: Path, account: str) -> Path:
    """Where the account of connection ``account`` lived before the shared file."""
    return directory / f"{_LEGACY_PREFIX}{account}.db"


def _import_old_files(db: sqlite3.Connection, directory: Path) -> None:
    """Import every old per-connection file next to the shared one, once each."""
    for path in sorted(directory.glob(f"{_LEGACY_PREFIX}*.db")):
        account = path.name[len(_LEGACY_PREFIX) : -len(".db")]
        if not account:
            continue
        try:
            lock = _acquire_lock(str(path))
        except BrokerUnavailable:
            continue  # open elsewhere (an old service still running): imported next time
        try:
            _import_one(db, path, account)
        finally:
            os.close(lock)


def _import_one(db: sqlite3.Connection, path: Path, account: str) -> None:
    known = db.execute("SELECT 1 FROM accounts WHERE name = ?", (account,)).fetchone()
    db.execute("ATTACH DATABASE ? AS old", (str(path),))
    try:
        if not _is_old_layout(_tables(db, "old")):
            return  # not an old account file: leave it alone
        if known is None:
            with _transaction(db):
                _copy_old_account(db, "old", "", account, fills_table=False)
    finally:
        db.execute("DETACH DATABASE old")
    # Folded into the shared file (or the shared file had the account already):
    # keep the old file as it was, under a name that is not imported again.
    _checkpoint(path)
    path.rename(path.with_name(path.name + IMPORTED_SUFFIX))
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def _checkpoint(path: Path) -> None:
    """Fold ``path``'s WAL into it, so that the file alone holds everything."""
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def unusable_account(path: str, exc: BaseException) -> ConfigError:
    """The error for an account file that cannot be opened or read (not worth retrying)."""
    reason = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        # Name the file at fault when it is another one (a change log segment, the lock).
        other = exc.filename is not None and str(exc.filename) != path
        reason = f"{exc.strerror}: {exc.filename}" if other else exc.strerror
    return ConfigError(
        f"paper account file {path} cannot be used ({reason}); fix its directory or"
        " permissions, or start afresh with `ult paper reset`"
    )


def _acquire_lock(path: str) -> int:
    try:
        fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise unusable_account(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BrokerUnavailable(
            f"paper account {path} is in use by another connection or process"
        ) from None
    return fd


def reset_store(path: str, account: str | None = None) -> bool:
    """Delete one account (``account``) or the whole file; returns whether there was any.

    An account's old per-connection file next to ``path`` goes too, so that
    it is not imported again. A file that cannot be read is deleted whole.
    Refused with ``BrokerUnavailable`` while a service has the file open:
    stop the service first.
    """
    if path == MEMORY or not Path(path).parent.is_dir():
        return False
    fd = _acquire_lock(path)
    try:
        removed = False
        if account is not None:
            if Path(path).name == DEFAULT_FILE:
                removed = _delete_old_file(old_file(Path(path).parent, account))
            try:
                return _delete_account(path, account) or removed
            except sqlite3.DatabaseError:
                pass  # unreadable: only deleting the file starts afresh
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)
                removed = True
        changelog.remove(path)
        return removed
    finally:
        os.close(fd)


def _delete_old_file(path: Path) -> bool:
    if not path.exists():
        return False
    fd = _acquire_lock(str(path))  # an old service still running on it: refused
    try:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        return True
    finally:
        os.close(fd)


def _delete_account(path: str, account: str) -> bool:
    if not Path(path).exists():
        return False
    db = sqlite3.connect(path, isolation_level=None)
    try:
        _layout(db, path)  # refuses a later layout's file, which it would delete whole
        tables = _tables(db)
        if _is_old_layout(tables):
            raise sqlite3.DatabaseError("old layout: the file holds one account")
        if "accounts" not in tables:
            return False
        _upgrade(db, path, account)  # this layout's rows are what a replay writes
        _replay_log(db, path)  # what a crash left in the log, the account's rows too
        db.execute("BEGIN IMMEDIATE")
        found = db.execute("SELECT 1 FROM accounts WHERE name = ?", (account,)).fetchone()
        for table in _TABLES:
            column = "name" if table == "accounts" else "account"
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (account,))
        db.execute("COMMIT")
        return found is not None
    finally:
        db.close()
