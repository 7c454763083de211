"""The order journal on PostgreSQL: the SQLite journal's semantics on a database server.

``[journal] url = "postgresql://..."`` selects it. Everything the service
sees is the SQLite store's (``journal/sqlite.py``), which this one extends:
group commit by one writer on its own thread (psycopg 3's sync API: its
async API runs only on asyncio), records of new orders durable when
``record`` returns, the brokers' news committed with the next batch,
idempotency by client order id, bounded memory with reads falling back to
the database, migrations by schema version (``journal/postgres_schema.py``).
Only the engine differs.

A database that cannot be reached (restarted, failed over, network cut) is
an outage, like a full disk for SQLite: ``unavailable`` says why, new orders
are refused with ``JournalUnavailable`` before anything is sent, the
brokers' news is held in memory, and every ``probe_interval_s`` the writer
reconnects and writes what it holds; the first success ends the outage.

Fencing (``[cluster]``): a store opened with a ``Fence`` writes only while
the cluster's lease row still carries the fence's epoch. Each write's
transaction reads that row ``FOR SHARE`` first, so a takeover (which bumps
the epoch) waits for a write in flight and every later write of the old
epoch is refused by the database itself: ``StaleEpoch``, an outage
("fenced") that never ends for this store. Its connections carry the
holder's ``lease.session_tag``: a standby ends them if the lease ran out
while a write stayed open (the holder stopped inside it).

The password is never in the configuration: it is the ``PGPASSWORD``
credential (``$CREDENTIALS_DIRECTORY/PGPASSWORD``, else the environment),
or whatever libpq finds itself (``~/.pgpass``, ``PGPASSFILE``). Messages
name the URL without one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import trio

from ult_actors.cluster.lease import session_tag
from ult_actors.errors import ConfigError, JournalUnavailable
from ult_actors.journal.bodies import decode_fill
from ult_actors.journal.costs import with_their_fills
from ult_actors.journal.postgres_schema import migrate
from ult_actors.journal.sqlite import (
    _FSYNC,
    SqliteStore,
    _DedicatedThreadCommitter,
    _Row,
    table_rows,
)
from ult_actors.messages import Fill, Order, ReportQuery
from ult_actors.report.inputs import CostInputs
from ult_actors.secrets import read_secret

try:
    import psycopg
except ImportError:  # the optional extra is not installed: the opener says what to do
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")

_APPEND = "INSERT INTO events (seq, client_order_id, event, ts, body) VALUES (%s, %s, %s, %s, %s)"
_UPSERT = (
    "INSERT INTO orders (client_order_id, order_id, broker, status, updated_at, seq, body)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (client_order_id) DO UPDATE SET"
    " order_id = excluded.order_id, broker = excluded.broker, status = excluded.status,"
    " outcome = '', updated_at = excluded.updated_at, seq = excluded.seq, body = excluded.body"
)
# A fill reported twice (a replayed stream, a reconnect) is kept once.
_ADD_FILL = (
    "INSERT INTO fills (broker, fill_id, client_order_id, symbol, ts, body)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_LEASE_EPOCH = "SELECT epoch, holder FROM ult_lease WHERE cluster = %s FOR SHARE"


@dataclass(frozen=True)
class Fence:
    """The lease a store writes under: its cluster's name, the epoch it was won at and the
    instance that won it."""

    cluster: str
    epoch: int
    holder: str


class StaleEpoch(Exception):
    """A write under a lease another instance has taken since: refused by the database."""


def redacted(url: str) -> str:
    """``url`` without its password, fit for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def connect(
    url: str,
    *,
    connect_timeout_s: float = 5.0,
    autocommit: bool = True,
    application_name: str | None = None,
) -> Any:
    """A psycopg connection (in autocommit mode unless told), named ``application_name``
    if given; ``ConfigError`` if psycopg is missing."""
    if psycopg is None:
        raise ConfigError(
            "journal.url names PostgreSQL but psycopg is not installed;"
            " install ult-actors[postgres]"
        )
    options: dict[str, Any] = {}
    password = read_secret("PGPASSWORD")  # the credential file wins over libpq's own sources
    if password:
        options["password"] = password.reveal()
    if application_name is not None:
        options["application_name"] = application_name
    return psycopg.connect(
        url, autocommit=autocommit, connect_timeout=max(1, int(connect_timeout_s)), **options
    )


#: An order's history, oldest first (the parameter: its client order id).
_HISTORY_BY_ORDER = "SELECT seq, event, ts, body FROM events WHERE client_order_id = ? ORDER BY seq"


class _Reads:
    """A psycopg connection shaped like the ``sqlite3`` one the SQLite store reads with.

    The SQLite store's reads (``get``, ``list_orders``, ``history``, ...) are
    plain SQL with ``?`` placeholders; this runs them on PostgreSQL, so each
    read is written once. It reconnects on the next read after the connection
    broke.
    """

    def __init__(self, url: str, connect_timeout_s: float, application_name: str | None) -> None:
        self._url = url
        self._timeout = connect_timeout_s
        self._application_name = application_name
        self._conn: Any = None

    def execute(self, sql: str, params: Any = ()) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self._url,
                connect_timeout_s=self._timeout,
                application_name=self._application_name,
            )
        return self._conn.execute(sql.replace("?", "%s"), params)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresStore(SqliteStore):
    """An ``OrderStore`` on a PostgreSQL database; open it with ``open_postgres_store``."""

    def __init__(
        self,
        url: str,
        *,
        fence: Fence | None = None,
        connect_timeout_s: float = 5.0,
        probe_interval_s: float = 1.0,
        **options: Any,
    ) -> None:
        # A commit waits for the server, never run on the trio thread ("full");
        # durability is the server's (synchronous_commit), there is no WAL file to fsync.
        super().__init__(
            Path(),
            synchronous="full",
            writer="thread",
            probe_interval_s=probe_interval_s,
            **options,
        )
        self.url = url
        self.name = redacted(url)
        # Its ``events`` keeps the index by client order id (its writes are the server's
        # work, not this process's): a history is read through it, no ``first_seq`` kept.
        self.history_sql = _HISTORY_BY_ORDER
        #: The lease this store writes under; None: no cluster, every write goes.
        self.fence = fence
        self.connect_timeout_s = connect_timeout_s
        self._writer_conn: Any = None
        #: The fence's holder names the connections (a standby ends them if need be).
        self._application_name = (
            session_tag(fence.cluster, fence.holder) if fence is not None else None
        )
        self._reads = _Reads(url, connect_timeout_s, self._application_name)

    # -- opening and closing --------------------------------------------------

    def _open_sync(self) -> None:
        """Connect, migrate and index; ``ConfigError`` naming the database if it cannot be."""
        try:
            self._writer_conn = self._connect()
            migrate(self._writer_conn, where=self.name)
            # The SQLite store's own reads, bookkeeping and close work on these.
            self._wconn = self._rconn = cast(Any, self._reads)
            self._load()
        except (ConfigError, StaleEpoch):
            raise
        except Exception as exc:
            if psycopg is not None and isinstance(exc, psycopg.Error):
                raise ConfigError(f"journal {self.name} cannot be opened: {exc}") from None
            raise

    async def _open_store(self) -> None:
        await trio.to_thread.run_sync(self._open_sync)
        self._committer = _DedicatedThreadCommitter(f"journal-writer:{self.name}")

    def _close_sync(self) -> None:
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None
        self._reads.close()
        self._wconn = self._rconn = None

    # -- writing ----------------------------------------------------------------

    def _write_rows(
        self,
        rows: list[_Row],
        *,
        fills: list[Fill] | None = None,
        probe: bool = False,
        how: int = _FSYNC,
    ) -> None:
        """One transaction: the lease check (with a fence), then the batch's rows (durable
        as the server makes them, whatever ``how`` says: nothing is begun ahead)."""
        events, latest, fill_rows = table_rows(rows, fills or [])
        conn = self._begin()
        try:
            with conn.cursor() as cur:
                if self.fence is not None:
                    self._check_fence(cur)
                if events:
                    cur.executemany(_APPEND, events)
                    cur.executemany(_UPSERT, latest)
                if fill_rows:
                    cur.executemany(_ADD_FILL, fill_rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.broken:
                conn.close()  # the next write reconnects
            elif not conn.closed:
                conn.execute("ROLLBACK")
            raise
        self._seen.add_all(row[0] for row in latest)  # the writer's thread, as the fold's

    def _begin(self) -> Any:
        """The writer's connection with a transaction begun, connected afresh if the
        server dropped the old one (a restart while idle: found out only now, and
        nothing of this batch was sent on it)."""
        conn = self._writer_conn
        if conn is not None and not conn.closed:
            try:
                conn.execute("BEGIN")
                return conn
            except Exception:
                if not conn.broken:
                    raise
                conn.close()
        # Reconnected on the writer's own thread (after an outage, by the probe).
        conn = self._writer_conn = self._connect()
        conn.execute("BEGIN")
        return conn

    def _connect(self) -> Any:
        return connect(
            self.url,
            connect_timeout_s=self.connect_timeout_s,
            application_name=self._application_name,
        )

    def _check_fence(self, cur: Any) -> None:
        fence = self.fence
        assert fence is not None
        row = cur.execute(_LEASE_EPOCH, (fence.cluster,)).fetchone()
        if row is None or int(row[0]) != fence.epoch:
            holder = f"{row[1]} at epoch {row[0]}" if row else "nobody"
            raise StaleEpoch(
                f"cluster {fence.cluster!r} lease was taken over ({holder});"
                f" this instance's epoch {fence.epoch} may no longer write"
            )

    def _is_outage(self, exc: BaseException) -> bool:
        """An unreachable or failing server, or a lost lease: not a bug in ``ult``."""
        if isinstance(exc, StaleEpoch | OSError):
            return True
        return psycopg is not None and isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError
        )

    def _outage_reason(self, exc: BaseException) -> str:
        if isinstance(exc, StaleEpoch):
            return f"fenced: {exc}"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"database unreachable ({type(exc).__name__}: {first_line})"

    async def _probe_until_writable(self) -> None:
        if self.unavailable is not None and self.unavailable.startswith("fenced"):
            return  # another instance is active now: nothing this store writes ever will be
        await super()._probe_until_writable()

    # -- reading ----------------------------------------------------------------

    async def _read(self, fn: Callable[[Any], T]) -> T:
        """A read on the reading connection; ``JournalUnavailable`` while the server is not
        reachable (what is in memory is still answered without it)."""
        async with self._read_lock:
            if self._rconn is None:
                return await super()._read(fn)  # closed: the SQLite store's error
            retried = False
            while True:
                try:
                    return await trio.to_thread.run_sync(fn, self._reads)
                except Exception as exc:
                    if not self._is_outage(exc):
                        raise
                    self._reads.close()
                    if retried:
                        raise JournalUnavailable(
                            f"journal {self.name} cannot be read: {self._outage_reason(exc)}"
                        ) from None
                    # Once more, connected afresh: a connection the server dropped (a
                    # restart) fails only when it is next used.
                    retried = True

    async def cost_inputs(self, query: ReportQuery) -> CostInputs:
        """What a cost report is computed from (see ``OrderStore``), read on a connection
        of its own as the report is built; what was recorded before the call is in it."""
        if self._queue and self.unavailable is None:
            await self._queue[-1].wait()
        return PostgresCostInputs(self.url, query, connect_timeout_s=self.connect_timeout_s)


class PostgresCostInputs:
    """``CostInputs`` read from the journal's database (``report.inputs``).

    Blocking: read it off the trio thread. One read-only transaction of its
    own (repeatable read: orders and fills as of one moment) while ``orders()``
    is read; server-side cursors stream both tables in client order id order
    (``COLLATE "C"``: code point order, as the join compares).
    """

    def __init__(self, url: str, query: ReportQuery, *, connect_timeout_s: float = 5.0) -> None:
        self.url = url
        self.query = query
        self.connect_timeout_s = connect_timeout_s
        self._conn: Any = None
        self._asked = 0

    def orders(self) -> Iterator[tuple[Order, Sequence[Fill]]]:
        conn = connect(self.url, connect_timeout_s=self.connect_timeout_s, autocommit=False)
        self._conn = conn
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            where: list[str] = ["TRUE"]
            args: list[int | str] = []
            if self.query.since_ns is not None:
                where.append("updated_at >= %s")  # written after it was created
                args.append(self.query.since_ns)
            if self.query.broker is not None:
                where.append("broker = %s")
                args.append(self.query.broker)
            orders = conn.cursor(name="ult_report_orders")
            orders.execute(
                f"SELECT client_order_id, body FROM orders WHERE {' AND '.join(where)}"
                ' ORDER BY client_order_id COLLATE "C"',
                args,
            )
            fills = conn.cursor(name="ult_report_fills")
            fills.execute(
                'SELECT client_order_id, body FROM fills ORDER BY client_order_id COLLATE "C"'
            )
            yield from with_their_fills(orders, fills)
        finally:
            self._conn = None
            conn.close()

    def last_trade(self, symbol: str, ts: int) -> Decimal | None:
        assert self._conn is not None, "last_trade is asked while orders() is read"
        # Streamed: the newest is nearly always a trade (fees come later, with qty 0).
        self._asked += 1
        rows = self._conn.cursor(name=f"ult_report_last_{self._asked}")
        rows.itersize = 16
        rows.execute(
            "SELECT body FROM fills WHERE symbol = %s AND ts <= %s ORDER BY ts DESC", (symbol, ts)
        )
        for (body,) in rows:
            fill = decode_fill(body)
            if fill.qty:  # fees reported later are no trade
                return fill.price
        return None


@asynccontextmanager
async def open_postgres_store(
    url: str,
    *,
    fence: Fence | None = None,
    now_ns: Callable[[], int] = time.time_ns,
    **options: Any,
) -> AsyncIterator[PostgresStore]:
    """Open (creating or migrating) the journal in the database at ``url``; run its writer."""
    store = PostgresStore(url, fence=fence, now_ns=now_ns, **options)
    async with store.running():
        yield store


def postgres_store_opener(url: str, **options: Any) -> Callable[[], Any]:
    """An opener for ``journal_actor``: each journal incarnation connects again."""

    def open_store() -> Any:
        return open_postgres_store(url, **options)

    return open_store
