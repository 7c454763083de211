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
    order (by code point), joined as they are read: each order with its own fills."""
    fill_rows = iter(fills)
    pending = next(fill_rows, None)
    for coid, body in orders:
        own: list[Fill] = []
        while pending is not None and pending[0] <= coid:
            if pending[0] == coid:
                own.append(decode_fill(pending[1]))
            pending = next(fill_rows, None)
        yield decode_order(body), own


class JournalCostInputs:
    """``CostInputs`` read from the journal file at ``path`` (``report.inputs``).

    Blocking: read it off the trio thread. A connection of its own, opened
    read-only while ``orders()`` is read, so a report never writes and never
    waits on the service's. Orders and fills are read together in client order
    id order (both tables are indexed by it), so each order comes with its
    fills without either table being held.
    """

    def __init__(self, path: Path, query: ReportQuery) -> None:
        self.path = path
        self.query = query
        self._conn: sqlite3.Connection | None = None

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
                "SELECT client_order_id, body FROM fills ORDER BY client_order_id"
            )
            yield from with_their_fills(orders, fills)
        finally:
            self._conn = None
            conn.close()

    def last_trade(self, symbol: str, ts: int) -> Decimal | None:
        assert self._conn is not None, "last_trade is asked while orders() is read"
        rows = self._conn.execute(
            "SELECT body FROM fills WHERE symbol = ? AND ts <= ? ORDER BY ts DESC", (symbol, ts)
        )
        for (body,) in rows:
            fill = decode_fill(body)
            if fill.qty:  # fees reported later are no trade
                return fill.price
        return None
