"""Reading what a cost report needs from a journal file, on a read-only connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from ult_actors.messages import Fill, Order, ReportQuery

_decode_orders = msgspec.msgpack.Decoder(Order).decode
_decode_fill = msgspec.msgpack.Decoder(Fill).decode


def read_cost_inputs(path: Path, query: ReportQuery) -> tuple[list[Order], list[Fill]]:
    """The orders ``query`` may cover and the fills of its symbols (see ``OrderStore``).

    Blocking: run it off the trio thread. A connection of its own, opened
    read-only, so a report never writes and never waits on the service's.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        where: list[str] = ["1"]
        args: list[int | str] = []
        if query.since_ns is not None:
            # An order changes after it is created: none created since ``since`` was
            # last written before it.
            where.append("updated_at >= ?")
            args.append(query.since_ns)
        if query.broker is not None:
            where.append("broker = ?")
            args.append(query.broker)
        sql = f"SELECT body FROM orders WHERE {' AND '.join(where)}"
        orders = [_decode_orders(body) for (body,) in conn.execute(sql, args)]
        if query.symbol is not None:
            orders = [o for o in orders if o.symbol == query.symbol]
            rows = conn.execute("SELECT body FROM fills WHERE symbol = ?", (query.symbol,))
        else:
            rows = conn.execute("SELECT body FROM fills")
        fills = [_decode_fill(body) for (body,) in rows]
    finally:
        conn.close()
    return orders, fills
