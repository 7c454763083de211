"""The order journal's PostgreSQL schema and its migrations.

The same tables as the SQLite journal (``journal/schema.py``: ``orders``,
``events``, ``fills``; bodies are msgpack in ``bytea``), plus ``ult_lease``:
one row per cluster (``[cluster] name``), the instance holding it, its
fencing epoch and when the lease runs out, in the database's own clock.

The schema version is the one row of ``ult_schema``. Each migration moves
the database up by one version in one transaction, under an advisory lock,
so two instances starting at once migrate it once. A database written by a
newer ``ult`` than this one is refused rather than guessed at.
"""

from __future__ import annotations

from typing import Any

from ult_actors.errors import ConfigError
from ult_actors.journal.schema import OPEN_STATUS_SQL

_V1 = [
    "CREATE TABLE ult_schema (version INTEGER NOT NULL)",
    "INSERT INTO ult_schema (version) VALUES (0)",
    """CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        broker TEXT NOT NULL,
        status TEXT NOT NULL,
        outcome TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        body BYTEA NOT NULL
    )""",
    "CREATE INDEX orders_seq ON orders (seq)",
    "CREATE INDEX orders_order_id ON orders (order_id) WHERE order_id != ''",
    f"CREATE INDEX orders_open ON orders (broker) WHERE status IN {OPEN_STATUS_SQL}",
    """CREATE TABLE events (
        seq BIGINT PRIMARY KEY,
        client_order_id TEXT NOT NULL,
        event TEXT NOT NULL,
        status TEXT NOT NULL,
        ts BIGINT NOT NULL,
        body BYTEA NOT NULL
    )""",
    "CREATE INDEX events_by_order ON events (client_order_id, seq)",
    """CREATE TABLE fills (
        broker TEXT NOT NULL,
        fill_id TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        ts BIGINT NOT NULL,
        body BYTEA NOT NULL,
        PRIMARY KEY (broker, fill_id)
    )""",
    "CREATE INDEX fills_by_symbol ON fills (symbol)",
    """CREATE TABLE ult_lease (
        cluster TEXT PRIMARY KEY,
        epoch BIGINT NOT NULL,
        holder TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    )""",
]

# Version 2: a report reads fills beside their orders (the join compares code points)
# and a symbol's last trade.
_V2 = [
    'CREATE INDEX fills_by_order ON fills (client_order_id COLLATE "C")',
    'CREATE INDEX orders_by_id_c ON orders (client_order_id COLLATE "C")',
    "CREATE INDEX fills_by_symbol_time ON fills (symbol, ts)",
    "DROP INDEX fills_by_symbol",
]

# Version 3: no index of open orders (nothing reads by it: open orders are loaded by
# ``orders_seq`` and kept in memory after; the SQLite journal dropped it at its version 7),
# and, as in the SQLite journal, ``events.status`` and ``orders.outcome`` are no longer
# written (left empty: the body has both). They are kept, with a default, rather than
# dropped, so an instance of an earlier version still running against it can write.
_V3 = [
    "DROP INDEX orders_open",
    "ALTER TABLE events ALTER COLUMN status SET DEFAULT ''",
    "ALTER TABLE orders ALTER COLUMN outcome SET DEFAULT ''",
]

# Version 4: bodies are written as msgpack arrays of the fields, not maps, as in the SQLite
# journal's version 9 (``journal.bodies``, which reads both). No statement: the version is
# raised so that an older ``ult`` refuses to start on the database instead of failing on
# the bodies it reads.
_V4: list[str] = []

#: ``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1``.
MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4]
SCHEMA_VERSION = len(MIGRATIONS)

# Any constant will do: it only has to be the same for every ult.
_MIGRATION_LOCK = 0x756C7401


def schema_version(conn: Any) -> int:
    """The version a database is at (0: no journal in it yet)."""
    exists = conn.execute("SELECT to_regclass('ult_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    return int(conn.execute("SELECT version FROM ult_schema").fetchone()[0])


def migrate(conn: Any, *, target: int = SCHEMA_VERSION, where: str = "") -> int:
    """Bring the database of ``conn`` (a psycopg connection in autocommit mode) up to
    ``target``, one transaction per step; returns the version it was at."""
    # A session lock, taken before the steps' transactions begin: each then starts after
    # the previous holder's commit and sees its tables.
    conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
    try:
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise ConfigError(
                f"journal {where or '(database)'} has schema version {found}, newer than this"
                f" ult understands ({SCHEMA_VERSION}); upgrade ult or point journal.url elsewhere"
            )
        for version in range(found, target):
            with conn.transaction():
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("UPDATE ult_schema SET version = %s", (version + 1,))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return found
