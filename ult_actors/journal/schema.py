"""The order journal's SQLite schema and its migrations.

The schema version lives in SQLite's ``PRAGMA user_version`` (0 for a new
file). Each migration moves the file up by one version inside one
transaction, so a crash mid-migration leaves the old version intact. A file
written by a newer ``ult`` than this one is refused rather than guessed at.

Tables (version 12):

``orders``
    The latest state of each order, keyed by client order id: the columns
    indexes and queries read. ``seq`` is the journal sequence of the last
    write, so "newest first" means "most recently changed first". The order
    itself (its msgpack-encoded ``Order``, ``journal.bodies``) is the body of
    its ``events`` row of that ``seq``: ``ORDER_BODY_SQL`` reads it. ``first_seq``
    is the sequence of its first write: its history is the ``events`` rows of
    its client order id between the two (``HISTORY_SQL``). ``orders.body`` is written
    empty since version 8; a row an earlier version wrote and nothing
    rewrote since keeps its own, which is read instead.
``events``
    Every write, in order: what happened (``submit``, ``update``,
    ``reconcile``, ...) and the order as it stood after. The history of an
    order, for people; the service itself reads only ``orders``. Not indexed
    by client order id since version 10: a history is read by sequence range.
    Its ``client_order_id`` is written empty since version 12 (the body has
    it): a history keeps the rows of its range that name the order, or name
    none and hold its id, and whose body is the order's (``HISTORY_SQL``).
``fills``
    Every execution as it was reported: ``body`` is the msgpack-encoded
    ``Fill`` (price, commission, fees, its broker and fill id). What cost
    reports (``ult report``) are computed from, with ``orders``. No key and
    no index since version 11: a row is an append to the table, and the
    report, which reads every fill once, does what the keys did once for all
    of them (``journal.costs``): it sorts the fills by client order id, keeps
    a fill reported twice (a replayed stream, a log replayed after a crash)
    once, by its broker and fill id, and indexes the fills by symbol and time
    for a symbol's last trade only if it asks for one.

``orders.outcome`` and ``events.status`` are written empty: nothing reads
them (the body has both), and each was a text parameter SQLite copied for
every row the fold wrote. Not a new version: such a file is a version-7 file
to every ``ult``, none of which reads them; rebuilding the tables without them
would take a minute per million orders at the first start.
"""

from __future__ import annotations

import sqlite3

from ult_actors.errors import ConfigError
from ult_actors.messages import OPEN_STATUSES

#: Status values that are not final, as an SQL list: ``messages.OPEN_STATUSES``.
OPEN_STATUS_SQL = "(" + ",".join(f"'{status}'" for status in sorted(OPEN_STATUSES)) + ")"
#: The same test as ``OPEN_STATUS_SQL``, one ``=`` per status, for the partial index of
#: open orders (version 6; version 7 dropped the index).
OPEN_STATUS_TEST = " OR ".join(f"status = '{status}'" for status in sorted(OPEN_STATUSES))
#: An order's body, in a query ``FROM orders``: its own ``body`` as an earlier version
#: wrote it, else the body of its last event (version 8 writes each body once, in
#: ``events``). An older file's row is read as it is: nothing promises that an event row
#: of its ``seq`` exists. The event is read only for a row without a body. Plain SQL that
#: PostgreSQL runs too: its store shares the reads (its ``orders`` keeps every body).
ORDER_BODY_SQL = (
    "CASE WHEN length(orders.body) > 0 THEN orders.body"
    " ELSE (SELECT e.body FROM events AS e WHERE e.seq = orders.seq) END"
)
#: An order's history, oldest first (the parameter: its client order id): the
#: ``events`` rows between its first and last writes (``orders.first_seq`` and ``seq``), read
#: by sequence, the table's own key (version 10 dropped the index by client order id). A row
#: written since version 12 names no order (its body does): such a row is read if its body
#: holds the id's bytes, and kept if the body is the order's (``SqliteStore.history``).
HISTORY_SQL = (
    "SELECT seq, event, ts, body FROM events WHERE seq BETWEEN"
    " (SELECT first_seq FROM orders WHERE client_order_id = ?1)"
    " AND (SELECT seq FROM orders WHERE client_order_id = ?1)"
    " AND (client_order_id = ?1"
    " OR (client_order_id = '' AND instr(body, CAST(?1 AS BLOB)) > 0)) ORDER BY seq"
)
#: What version 1 counted as open (a migration is history: it never changes).
_V1_OPEN_STATUS_SQL = "('pending_new','accepted','partially_filled','pending_cancel')"

_V1 = [
    """CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        broker TEXT NOT NULL,
        status TEXT NOT NULL,
        outcome TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX orders_seq ON orders (seq)",
    "CREATE INDEX orders_order_id ON orders (order_id) WHERE order_id != ''",
    f"CREATE INDEX orders_open ON orders (broker) WHERE status IN {_V1_OPEN_STATUS_SQL}",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        client_order_id TEXT NOT NULL,
        event TEXT NOT NULL,
        status TEXT NOT NULL,
        ts INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
]

# Version 2: an order's history is read by client order id.
_V2 = ["CREATE INDEX events_by_order ON events (client_order_id, seq)"]

# Version 3: open orders include ``pending_replace`` and ``held`` (replaces and
# order lists); the partial index of open orders follows.
_V3 = [
    "DROP INDEX orders_open",
    f"CREATE INDEX orders_open ON orders (broker) WHERE status IN {OPEN_STATUS_SQL}",
]

# Version 4: executions with their fees, for cost reports.
_V4 = [
    """CREATE TABLE fills (
        broker TEXT NOT NULL,
        fill_id TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        ts INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (broker, fill_id)
    )""",
]

# Version 5: a report reads fills beside their orders and a symbol's last trade.
_V5 = [
    "CREATE INDEX fills_by_order ON fills (client_order_id)",
    "CREATE INDEX fills_by_symbol_time ON fills (symbol, ts)",
]

# Version 6: the partial index of open orders (the same rows) tests the status with ``=``
# per value: SQLite evaluates an ``IN`` list of constants through a temporary table it
# builds for every row written to ``orders`` (~30,000 instructions an order on the fold's
# thread, a third of them zeroing freed memory), and a chain of ``=`` without one.
_V6 = [
    "DROP INDEX orders_open",
    f"CREATE INDEX orders_open ON orders (broker) WHERE {OPEN_STATUS_TEST}",
]

# Version 7: no partial index of open orders. No query reads by it (open orders are loaded
# by ``orders_seq``, and kept in memory after), and every write of an order that is open
# at a fold, or was at the fold before, inserted or deleted its entry: an order open
# across two folds cost ~7,000 instructions more on the fold's thread with it.
_V7 = ["DROP INDEX orders_open"]

# Version 8: ``orders.body`` is written empty, the body read through the order's last
# event (``ORDER_BODY_SQL``): the fold wrote each order's body twice, once per table
# (without the second copy it writes ~15 % fewer bytes an order at 100 orders a
# transaction, docs/performance.md). No statement: the rows stay as they are (rebuilding
# the table would take a minute per million orders at the first start), each row is
# rewritten without its copy at its next change. The version is raised so that an older ``ult``,
# which reads ``orders.body`` alone, refuses the file instead of misreading it.
_V8: list[str] = []

# Version 9: bodies (``events.body``, ``fills.body``) are written as msgpack arrays of the
# fields, not maps (``journal.bodies``: a third of the bytes, fewer instructions an order
# on the fold's thread, docs/performance.md). No statement: the bodies already written stay
# maps, and this ``ult`` reads both forms. The version is raised so that an older ``ult``,
# which reads maps alone, refuses the file instead of failing on its bodies.
_V9: list[str] = []

# Version 10: no index of ``events`` by client order id (``events_by_order``): only an
# order's history read it, and every ``events`` row the fold wrote paid an entry (~8.7k
# instructions an order on the fold's thread, two rows a filled order: docs/performance.md).
# ``orders.first_seq`` bounds the history's range instead: an older file's rows get it from
# that index before it goes (one pass over ``orders`` at the first start).
_V10 = [
    "ALTER TABLE orders ADD COLUMN first_seq INTEGER NOT NULL DEFAULT 0",
    "UPDATE orders SET first_seq = COALESCE((SELECT MIN(e.seq) FROM events AS e"
    " WHERE e.client_order_id = orders.client_order_id), seq)",
    "DROP INDEX events_by_order",
]

# Version 11: ``fills`` without a key or an index (``fills_by_order``, ``fills_by_symbol_time``),
# and without the ``broker`` and ``fill_id`` columns (the body has both): each of the three
# B-trees cost every fill the fold wrote ~2.4-6k instructions, two text parameters ~700 each,
# for reads only a cost report makes, which does that work once per report instead
# (``journal.costs``, docs/performance.md). The table is rebuilt (SQLite drops no key in
# place): one copy of the fills at the first start, in their order (a report keeps the
# first of a fill reported twice).
_V11 = [
    """CREATE TABLE fills_v11 (
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        ts INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
    "INSERT INTO fills_v11 (client_order_id, symbol, ts, body)"
    " SELECT client_order_id, symbol, ts, body FROM fills ORDER BY rowid",
    "DROP TABLE fills",
    "ALTER TABLE fills_v11 RENAME TO fills",
]

# Version 12: ``events.client_order_id`` written empty (the body has the id): a text
# parameter SQLite copied for every event the fold wrote, for a column only an order's
# history read (docs/performance.md). No statement: the rows already written keep theirs,
# and a history reads both (``HISTORY_SQL``). The version is raised so that an older ``ult``,
# whose history reads the column alone, refuses the file instead of missing rows.
_V12: list[str] = []

#: ``MIGRATIONS[i]`` takes a file from version ``i`` to ``i + 1``.
MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The version a journal file is at (0: empty)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, *, target: int = SCHEMA_VERSION, path: str = "") -> int:
    """Bring ``conn`` up to ``target``, one transaction per step; returns the old version.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise ConfigError(
            f"journal {path or '(file)'} has schema version {found}, newer than this ult"
            f" understands ({SCHEMA_VERSION}); upgrade ult or point journal.path elsewhere"
        )
    for version in range(found, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            # user_version is part of the database header, so it commits with the step.
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return found
