"""Reading what a cost report needs from a journal file, on a read-only connection,
an order at a time (the report never holds the whole journal)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path

from ult_actors.journal.bodies import decode_fill, decode_order
from ult_actors.journal.schema import ORDER_BODY_SQL
from ult_actors.messages import Fill, Order, ReportQuery


def with_their_fills(
    orders: Iterable[tuple[str, bytes]], fills: Iterable[tuple[str, bytes]]
) -> Iterator[tuple[Order, Sequence[Fill]]]:
    """``(client order id, body)`` rows of orders and of fills, both in client order id
    order (by code point), joined as they are read: each order with its own fills, a fill
    reported more than once (the same broker and fill id) once, as first read."""
    fill_rows = iter(fills)
    pending = next(fill_rows, None)
    for coid, body in orders:
        own: list[Fill] = []
        while pending is not None and pending[0] <= coid:
            if pending[0] == coid:
                fill = decode_fill(pending[1])
                if not any(f.fill_id == fill.fill_id and f.broker == fill.broker for f in own):
                    own.append(fill)
            pending = next(fill_rows, None)
        yield decode_order(body), own


#: A symbol's trades at or before a moment, newest first, through ``_TRADES``.
_LAST_TRADES = (
    "SELECT f.body FROM temp.trades AS t, fills AS f"
    " WHERE t.symbol = ? AND t.ts <= ? AND f.rowid = t.fill ORDER BY t.ts DESC"
)
#: The fills by symbol and time, made once by a report that asks for a last trade: the
#: journal's ``fills`` has no index (schema 11), a temporary table on the report's own
#: connection does (SQLite's temporary file, not this process's memory, holds it).
_TRADES = (
    "CREATE TEMP TABLE trades AS SELECT symbol, ts, rowid AS fill FROM fills ORDER BY rowid",
    "CREATE INDEX temp.trades_at ON trades (symbol, ts)",
)


class JournalCostInputs:
    """``CostInputs`` read from the journal file at ``path`` (``report.inputs``).

    Blocking: read it off the trio thread. A connection of its own, opened
    read-only while ``orders()`` is read, so a report never writes and never
    waits on the service's. Orders and fills are read together in client order
    id order (the orders by their key, the fills sorted by SQLite as they are
    read, in the order they were written within an order), so each order comes
    with its fills without either table being held in this process's memory.
    """

    def __init__(self, path: Path, query: ReportQuery) -> None:
        self.path = path
        self.query = query
        self._conn: sqlite3.Connection | None = None
        self._trades = False

    def orders(self) -> Iterator[tuple[Order, Sequence[Fill]]]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        self._conn = conn
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            # One read transaction: orders and fills as of one moment.
            conn.execute("BEGIN")
            where: list[str] = ["1"]
            args: list[int | str] = []
            if self.query.since_ns is not None:
                # An order changes after it is created: none created since ``since`` was
                # last written before it.
                where.append("updated_at >= ?")
                args.append(self.query.since_ns)
            if self.query.broker is not None:
                where.append("broker = ?")
                args.append(self.query.broker)
            orders = conn.execute(
                f"SELECT client_order_id, {ORDER_BODY_SQL} FROM orders"
                f" WHERE {' AND '.join(where)}"
                " ORDER BY client_order_id",
                args,
            )
            fills = conn.cursor().execute(
                "SELECT client_order_id, body FROM fills ORDER BY client_order_id, rowid"
            )
            yield from with_their_fills(orders, fills)
        finally:
            self._conn = None
            self._trades = False
            conn.close()

    def last_trade(self, symbol: str, ts: int) -> Decimal | None:
        conn = self._conn
        assert conn is not None, "last_trade is asked while orders() is read"
        if not self._trades:
            for statement in _TRADES:
                conn.execute(statement)
            self._trades = True
        rows = conn.execute(_LAST_TRADES, (symbol, ts))
        for (body,) in rows:
            fill = decode_fill(body)
            if fill.qty:  # fees reported later are no trade
                return fill.price
        return None
