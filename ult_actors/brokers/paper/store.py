"""Where the paper account lives between runs: one SQLite file per paper connection.

This is the simulated *venue's* memory (cash, positions, orders, fills,
last prices), not the service's order journal, so it trades durability for
speed: WAL with ``synchronous=NORMAL`` survives a process crash and loses at
most the last transactions on a power cut. Every venue event (a submit, a
tick, a cancel) is written in one transaction.

While a connector has the file open it holds an exclusive ``flock`` on
``<path>.lock``, so a second service on the same state directory, or
``ult paper reset`` under a running service, is refused instead of
corrupting the account.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import msgspec

from ult_actors.brokers.paper.account import PaperHolding
from ult_actors.errors import BrokerUnavailable, ConfigError
from ult_actors.messages import Fill, Order

MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    client_order_id TEXT NOT NULL UNIQUE,
    open INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_open ON orders(open) WHERE open = 1;
CREATE TABLE IF NOT EXISTS fills (
    fill_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY,
    qty TEXT NOT NULL,
    avg_price TEXT NOT NULL,
    realized_pl TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prices (symbol TEXT PRIMARY KEY, price TEXT NOT NULL);
"""


class WorkingOrder(msgspec.Struct, kw_only=True):
    """An order at the paper venue plus the matching state the ``Order`` does not carry."""

    order: Order
    #: A stop or stop-limit whose stop price has been reached.
    triggered: bool = False
    #: Still travelling to the venue (``latency_ms``); not yet matched.
    in_transit: bool = False
    #: Commissions charged so far.
    commission: Decimal = Decimal(0)


@dataclass
class PaperSnapshot:
    """Everything loaded from the file at connect."""

    cash: Decimal | None = None
    #: When the file was first used (ns); ``None`` for a new file.
    created_at: int | None = None
    next_order: int = 1
    next_fill: int = 1
    open_orders: list[WorkingOrder] = field(default_factory=list)
    holdings: dict[str, PaperHolding] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)


_encode = msgspec.json.Encoder().encode
_decode_order = msgspec.json.Decoder(WorkingOrder).decode


def _lock_path(path: str) -> Path:
    return Path(f"{path}.lock")


class PaperStore:
    """An open paper account file; every method is synchronous and quick."""

    def __init__(self, path: str | None) -> None:
        self.path = path or MEMORY
        self._lock_fd: int | None = None
        if self.path != MEMORY:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise unusable_account(self.path, exc) from None
            self._lock_fd = _acquire_lock(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._release_lock()
            raise unusable_account(self.path, exc) from None
        self._depth = 0

    def close(self) -> None:
        """Close the file and release the lock; safe to call twice."""
        db, self._db = getattr(self, "_db", None), None  # type: ignore[assignment]
        if db is not None:
            db.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    # -- reads ----------------------------------------------------------------

    def load(self) -> PaperSnapshot:
        """The saved account, or an empty snapshot (``cash=None``) for a new file."""
        db = self._db
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        snap = PaperSnapshot()
        if "cash" in meta:
            snap.cash = Decimal(meta["cash"])
        if "created_at" in meta:
            snap.created_at = int(meta["created_at"])
        snap.next_order = int(meta.get("next_order", 1))
        snap.next_fill = int(meta.get("next_fill", 1))
        snap.open_orders = [
            _decode_order(body)
            for (body,) in db.execute("SELECT body FROM orders WHERE open = 1 ORDER BY rowid")
        ]
        snap.holdings = {
            symbol: PaperHolding(Decimal(qty), Decimal(avg), Decimal(pl))
            for symbol, qty, avg, pl in db.execute(
                "SELECT symbol, qty, avg_price, realized_pl FROM positions"
            )
        }
        snap.prices = {s: Decimal(p) for s, p in db.execute("SELECT symbol, price FROM prices")}
        return snap

    def order(self, order_id: str) -> WorkingOrder | None:
        row = self._db.execute("SELECT body FROM orders WHERE id = ?", (order_id,)).fetchone()
        return _decode_order(row[0]) if row else None

    def order_by_client_id(self, client_order_id: str) -> WorkingOrder | None:
        row = self._db.execute(
            "SELECT body FROM orders WHERE client_order_id = ?", (client_order_id,)
        ).fetchone()
        return _decode_order(row[0]) if row else None

    def fills(self, order_id: str) -> list[Fill]:
        rows = self._db.execute(
            "SELECT body FROM fills WHERE order_id = ? ORDER BY rowid", (order_id,)
        )
        return [msgspec.json.decode(body, type=Fill) for (body,) in rows]

    # -- writes (call inside ``transaction()``) ---------------------------------

    def put_order(self, working: WorkingOrder, *, is_open: bool) -> None:
        order = working.order
        self._db.execute(
            "INSERT INTO orders (id, client_order_id, open, body) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET open = excluded.open, body = excluded.body",
            (order.id, order.client_order_id, int(is_open), _encode(working)),
        )

    def put_fill(self, fill: Fill) -> None:
        self._db.execute(
            "INSERT INTO fills (fill_id, order_id, body) VALUES (?, ?, ?)",
            (fill.fill_id, fill.order_id, _encode(fill)),
        )

    def put_holding(self, symbol: str, holding: PaperHolding) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO positions (symbol, qty, avg_price, realized_pl)"
            " VALUES (?, ?, ?, ?)",
            (symbol, str(holding.qty), str(holding.avg_price), str(holding.realized_pl)),
        )

    def put_prices(self, prices: dict[str, Decimal]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO prices (symbol, price) VALUES (?, ?)",
            [(s, str(p)) for s, p in prices.items()],
        )

    def put_meta(self, **values: object) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, str(v)) for k, v in values.items()],
        )


def unusable_account(path: str, exc: BaseException) -> ConfigError:
    """The error for an account file that cannot be opened or read (not worth retrying)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ConfigError(
        f"paper account file {path} cannot be used ({reason}); fix its directory or"
        " permissions, or start afresh with `ult paper reset`"
    )


def _acquire_lock(path: str) -> int:
    try:
        fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
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


def reset_store(path: str) -> bool:
    """Delete the paper account file; returns whether there was one.

    Refused with ``BrokerUnavailable`` while a connector has it open: stop
    the service first.
    """
    if path == MEMORY or not Path(path).parent.is_dir():
        return False
    fd = _acquire_lock(path)
    try:
        removed = False
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)
                removed = True
        return removed
    finally:
        os.close(fd)
