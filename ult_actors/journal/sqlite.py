"""The durable order journal: an ``OrderStore`` on SQLite (WAL), written through a change log.

A batch of records is made durable by one append to the journal's change
log (``journal.changelog``: ``journal.db.log.<n>`` next to the file), not
by an SQLite transaction: ``record()`` puts the write in the open batch and
returns once the batch is appended, so a caller that has been answered
knows its order is on disk. A thread folds the log into the SQLite file
every ``fold_interval_s`` (20 ms) at most, every batch of that time in one
transaction, and deletes a segment once the file holds it; opening the
file first replays whatever segments a crash left. No SQLite runs on the
trio thread on an order's path.

One writer task writes batches one after another: while a write runs, new
records gather in the next batch, so under load many orders share one
append (and, with ``"full"``, one fsync) and at low load nothing waits for
a timer. ``linger_s`` optionally holds a batch open a little longer;
``max_batch`` bounds a batch. With ``"normal"`` the append (a copy into
the log's mapping, no system call) is made on the trio thread: a
``record`` that finds the writer task idle with nothing queued appends its
batch itself, at once, instead of waking the writer and waiting to be
woken in turn (two scheduler rounds on a lone order's path), and so does
every record of a burst, one append each (an append costs less than
parking the record's task until the writer's shared one). The writer task
serves what has to wait: a failed append, an outage. With ``"full"`` the append
and its fsync run off the trio thread, on trio's worker threads
(``writer="to_thread"``) or one dedicated thread (``writer="thread"``);
``python -m bench.journal`` compares them. With the dedicated thread, a
``record`` that finds the writer task idle hands its batch to the thread
itself, and the thread's answer wakes it directly (``_hands_over``): the
writer task neither wakes to take the batch nor to hand it back. If that
round ends with nothing else for the loop to run, the batch may be written
right there, on the trio thread, sparing both thread hand-overs, while that
thread runs again promptly after its fsync (``journal.fsync_route``).
A lone ``submit`` made with ``fsync_by_ack`` (the broker's, as its order
leaves) goes further: appended on the trio thread like a ``normal`` one.
With nothing else for the loop to run, while ``fsync_route`` keeps lone
writes on the trio thread, its fdatasync is made right there and it returns
durable (``_syncs_here``). Otherwise, with its fdatasync begun through
io_uring (``journal.fsync_ahead``), it returns at once; the order goes to
the broker while the disk works, and the broker's ack waits for ``durable``.
A ``kill -9`` keeps the record
(the append is in the page cache before the order leaves); a machine crash
before the fsync ends takes no ack with it, and restart adopts an order
the broker has and the journal lost. Such a record is appended without a
batch (``records_now(fsync_by_ack=True)``), so a paper order's step runs by
plain calls as with ``"normal"``. At its end, with no other task to run,
the step watches the ring for that fdatasync's end for up to
``fsync_spin_ns`` and acks the order right there (``durable_now``); else the
ack awaits ``durable``, and when the loop would sleep with the fdatasync
still running the trio thread watches the same way instead. Either way the
ack runs without the wake-up of a sleeping thread (tens of microseconds on
a virtual machine), while the machine has a core to spare and the disk is
quicker than a watch (``idle_spin.IdleSpin``).
``record_soon()`` and ``record_fill()`` (the brokers' news about orders
already sent) are not waited for and skip the log: the row goes, unencoded,
to the fold's thread (``JournalLog.news``), which encodes it and writes it
with its next fold, so it is in the file, fsynced, at most
``fold_interval_s`` after it was recorded, and costs the order's path no
append; a ``kill -9`` before that fold loses it (reconciliation asks the
broker), unless a later record that names another order or was made for one
already sent (not a plain ``submit``) carried it in its own append
(``_carry_news``): such a record is never durable over older news. A store
without a log (PostgreSQL's) queues news in its batches instead: a batch of
only news waits up to ``sync_interval_s`` for the next ``record`` (a
``submit``) to share its write, so it never puts a write in front of an
order (one timer serves many orders' news). What is queued or handed over
at close is written and folded before the file closes.

Durability: ``synchronous = "normal"`` (the default) appends without an
fsync, so a ``kill -9`` loses nothing recorded (the append is in the
operating system's page cache), and a ``LogSyncer`` thread fdatasyncs the
log ``sync_interval_s`` after an append (a machine crash loses at most
that much); ``"full"`` fdatasyncs the log before ``record`` returns (or,
``fsync_by_ack``, before ``durable`` does): one fsync per batch of submits
(group commit). Either way the fold's own
transactions are ``synchronous=FULL`` (off the loop, batched): a segment is
deleted only once the file holds its records durably.

Memory is bounded whatever the journal's size: it holds every order not yet
final, the ``cache_size`` most recently written orders, the records not yet
folded into the file (20 ms of them), and a fixed-size filter of the client
order ids ever journaled (``journal.seen.SeenFilter``), which answers "is this id new?"
without touching the disk for nearly every new id. Anything else is read
from the file (its primary key and indexes), off the trio thread. The file
(with its log) is the truth: the memory is rebuilt from it on open. Records
not yet in the file are visible to ``get``, ``list_orders`` and
``find_by_order_id`` from memory; ``history`` and ``cost_inputs`` hurry the
fold and wait for it (``in_file``).

One process at a time: the journal takes an exclusive ``flock`` on
``<path>.lock``, so a second service on the same state directory is refused
instead of interleaving writes.

A journal that cannot be written (disk full, read-only, I/O errors) is an
outage, not a crash: ``unavailable`` says why. Either the append fails (the
log's disk), or a fold does (the file's; the log keeps everything
meanwhile). Until a probe every ``probe_interval_s`` succeeds (it appends
what is held and folds everything, with ``probe_bytes`` of room to grow),
a record made before an order leaves (``submit``, ``resend``) is refused
with ``JournalUnavailable`` (so nothing is sent that is not on disk), while
the brokers' news about orders already sent (fills, cancels) is kept in
memory, answered from there and written by the probe that succeeds.
Cancels, queries and the kill switch keep working. A background fsync of
the log that fails is such an outage ("I/O error") until one succeeds.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import functools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar

import msgspec
import trio

from ult_actors import segment_log
from ult_actors.errors import ConfigError, Internal, JournalUnavailable
from ult_actors.idle_spin import IdleSpin
from ult_actors.journal import changelog
from ult_actors.journal.bodies import decode_order
from ult_actors.journal.changelog import (
    FILL_COID,
    FILL_SYMBOL,
    FILL_TS,
    ORDER_BROKER,
    ORDER_COID,
    ORDER_ID,
    ORDER_STATUS,
    ORDER_UPDATED_AT,
    BodyTexts,
    FillRow,
    JournalLog,
    LogRow,
    Record,
    fill_row,
    log_row,
    seq_of,
)
from ult_actors.journal.costs import JournalCostInputs
from ult_actors.journal.fsync_ahead import FSYNC_SPIN_NS, FsyncAhead, open_fsync_ahead
from ult_actors.journal.fsync_route import FsyncRoute
from ult_actors.journal.journal_event import JournalEvent as JournalEvent
from ult_actors.journal.log_sync import LogSyncer
from ult_actors.journal.running import running_beside
from ult_actors.journal.schema import HISTORY_SQL, OPEN_STATUS_SQL, ORDER_BODY_SQL, migrate
from ult_actors.journal.seen import SeenFilter
from ult_actors.lockfile import open_lock_file
from ult_actors.messages import OPEN_STATUSES, Fill, Order, ReportQuery
from ult_actors.mypyc_hints import mypyc_attr
from ult_actors.os_thread import name_os_thread
from ult_actors.recent import Recent
from ult_actors.report.inputs import CostInputs
from ult_actors.runtime.intake import IntakeGate
from ult_actors.sqlite_insert import ManyRowInsert

T = TypeVar("T")
R = TypeVar("R")
Writer = Literal["thread", "to_thread"]

_encode = msgspec.msgpack.Encoder().encode

# Folding is idempotent, so a log replayed after a crash (some of it folded already)
# leaves the file as one fold would: an order's row is replaced only by a newer state,
# an event is kept once per sequence number. ``orders.outcome`` and ``events.status`` are
# written empty (a constant, no parameter: each text parameter is ~800 instructions of
# SQLite's own copy): nothing reads them, the body has both (``journal.schema``). So is
# ``orders.body``: the order's body is its ``events`` row's of the same ``seq``, written
# in the same transaction (``ORDER_BODY_SQL`` reads it). And, since schema 12,
# ``events.client_order_id``: the body has it (``HISTORY_SQL`` reads a history by both).
# ``first_seq`` (the order's first write, where its history begins) is written with the
# row and kept: a record folded later than a newer one of its order (``_fold``) lowers it
# with ``_EARLIER_FIRST``.
#
# Each statement's last columns (an event's ``event``; an order's ``broker`` and ``status``; a
# fill's ``symbol``) are bound once for all of its rows when they share them
# (``ManyRowInsert``'s ``shared``): a fold's rows mostly do, and each text bound is a copy
# SQLite allocates.
_UPSERT = ManyRowInsert(
    "INSERT INTO orders (client_order_id, order_id, updated_at, seq, first_seq, outcome, body,"
    " broker, status)",
    7,
    " ON CONFLICT (client_order_id) DO UPDATE SET"
    " order_id = excluded.order_id, broker = excluded.broker, status = excluded.status,"
    " outcome = '', updated_at = excluded.updated_at, seq = excluded.seq,"
    " body = x'' WHERE excluded.seq > orders.seq",
    row="(?, ?, ?, ?, ?, '', x'', ?, ?)",
    shared=2,
)
_EARLIER_FIRST = "UPDATE orders SET first_seq = ?1 WHERE client_order_id = ?2 AND first_seq > ?1"
_APPEND = ManyRowInsert(
    "INSERT OR IGNORE INTO events (seq, client_order_id, ts, body, status, event)",
    4,
    row="(?, '', ?, ?, '', ?)",
    shared=1,
)
# A recovery probe writes this much (and deletes it in the same transaction):
# the file must be able to grow, not only rewrite a page in place.
_PROBE = "INSERT INTO events (seq, client_order_id, event, status, ts, body) VALUES (-1, '', 'probe', '', 0, zeroblob(?))"
_UNPROBE = "DELETE FROM events WHERE seq = -1"
# An append to ``fills``, which has no key (schema 11): a fill reported twice (a replayed
# stream, a log replayed after a crash) is kept once by the report that reads it.
_ADD_FILL = ManyRowInsert("INSERT INTO fills (client_order_id, ts, body, symbol)", 4, shared=1)

_Row = tuple[int, str, int, Order]  # (seq, event, ts, order)

#: The statuses of an order still open. A name of this module: compiled, a C static read,
#: not a look-up in the module's dict per record.
_OPEN: Final = OPEN_STATUSES

#: The memo of an append whose record the fold takes from ``record_answer`` (its news holds
#: the order's state to forget once folded): nothing to forget. Never written to.
_NOTHING: Final[list[_Row]] = []

#: The fold's rows are the appended records (``LogRow``: ten items, encoded) and the
#: brokers' news as it was handed over (``Record``: four, encoded by the fold): their
#: length tells them apart (and narrows a row's type to one of them, for mypy).
_NEWS_ITEMS: Final = 4

#: Records a fold writes a statement round (their ``events`` rows, then their orders'):
#: the GIL is held from one round's statements to the next's (see ``_fold``). Smaller
#: rounds shorten what a request waits for; each round costs a statement or two more.
_ROUND = 32

#: How a ``full`` append's fdatasync is made (``SqliteStore._sync``): before the append
#: returns, on the thread that appends; begun ahead through io_uring, not waited for; or
#: before it returns on the trio thread, timed for ``fsync_route`` (``_syncs_here``).
_FSYNC: Final = 0
_AHEAD: Final = 1
_HERE: Final = 2

#: Events recorded just before an order (re)leaves for the broker. While the
#: journal cannot be written they are refused: nothing leaves that is not on disk.
_BEFORE_SENDING = frozenset({"submit", "resend"})

#: SQLite error names (prefixes) that mean the file or the disk failed, not the code.
_OUTAGE_ERRORS = (
    "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_CORRUPT",
    "SQLITE_NOTADB", "SQLITE_PERM", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_NOLFS",
)  # fmt: skip


_Job = tuple[Callable[[], Any], Callable[[Any, "BaseException | None"], None]]


class _Committer(Protocol):
    async def run(self, fn: Callable[[], T]) -> T: ...

    async def aclose(self) -> None: ...


class _ToThreadCommitter:
    """Runs each commit on one of trio's cached worker threads."""

    async def run(self, fn: Callable[[], T]) -> T:
        # Not abandoned on cancel: a commit that started finishes, so the file never
        # holds half a batch and the connection is not used by two threads at once.
        return await trio.to_thread.run_sync(fn)

    async def aclose(self) -> None:
        return None


class _DedicatedThreadCommitter:
    """Runs each commit on one long-lived thread (no per-commit thread hand-out)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker.start()
        name_os_thread(self._worker)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, done = job
            try:
                result = fn()
            except BaseException as exc:  # handed back to the trio side
                done(None, exc)
            else:
                done(result, None)

    def submit(
        self, fn: Callable[[], Any], done: Callable[[Any, BaseException | None], None]
    ) -> None:
        """Run ``fn`` on the thread after the jobs before it; ``done(result, error)`` runs
        there after it (hand it back to trio with ``run_sync_soon``)."""
        self._jobs.put((fn, done))

    async def run(self, fn: Callable[[], T]) -> T:
        token = trio.lowlevel.current_trio_token()
        finished = trio.Event()
        outcome: list[Any] = []

        def done(result: Any, error: BaseException | None) -> None:
            outcome.append((result, error))
            token.run_sync_soon(finished.set)

        self._jobs.put((fn, done))
        # Shielded for the same reason as the to_thread variant: wait for the commit.
        with trio.CancelScope(shield=True):
            await finished.wait()
        result, error = outcome[0]
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        self._jobs.put(None)
        await trio.to_thread.run_sync(self._worker.join)


def _idle_loop() -> trio.lowlevel.RunStatistics | None:
    """The loop's statistics if it has nothing else to run (no runnable task, nothing
    queued by another thread), else None: the trio thread may then wait for the disk
    itself (``_syncs_here``, ``durable_now``) without holding up anything ready."""
    stats = trio.lowlevel.current_statistics()
    if stats.tasks_runnable or stats.run_sync_soon_queue_size:
        return None
    return stats


class _RoundMark(trio.abc.Instrument):
    """With ``full``: whether a ``record`` appended on the trio thread with its fdatasync
    begun ahead in the scheduler's current round; cleared as the round ends
    (``before_io_wait``: once a round, the only hook it has).

    The rest of that round's records wait for one fsync of the writer's instead of
    going ahead alone each, and a lone record of a later round goes ahead again,
    without the writer task waking after every such record only to mark where the
    burst ended (a task step per order).

    ``round_end`` (if set) runs once as the round ends: the round's records, in one
    batch, are written then (``_hands_over``); it is told whether the loop has nothing
    else to run (it would wait for I/O or a deadline next).
    """

    def __init__(self) -> None:
        self.appended = False
        self.round_end: Callable[[bool], None] | None = None
        #: Runs once, the next time the loop has nothing to run (given how long it would
        #: sleep), before it waits for I/O (``SqliteStore._spin_ahead``).
        self.idle: Callable[[float], None] | None = None

    def before_io_wait(self, timeout: float) -> None:
        self.appended = False
        if self.round_end is not None:
            round_end, self.round_end = self.round_end, None
            round_end(timeout > 0)
        if self.idle is not None and timeout > 0:
            idle, self.idle = self.idle, None
            idle(timeout)


class _Batch:
    """Records that commit in one transaction; everyone waiting on it wakes together."""

    __slots__ = ("_done", "error", "fills", "finished", "rows", "since", "waited")

    def __init__(self, waited: bool) -> None:
        #: When it was opened (trio's clock): news in it waits ``sync_interval_s`` from then.
        #: Read only while nobody waits for it: a batch a ``record`` opens skips the clock.
        self.since = 0.0 if waited else trio.current_time()
        self.rows: list[_Row] = []
        self.fills: list[Fill] = []
        self.finished = False
        #: Made by the first waiter: most batches (an inline append's) have none.
        self._done: trio.Event | None = None
        self.error: BaseException | None = None
        #: Someone waits for it (a ``record``), not only ``record_soon`` news.
        self.waited = waited

    def finish(self) -> None:
        """It is written (or failed: ``error``): wake everyone waiting on it."""
        self.finished = True
        if self._done is not None:
            self._done.set()

    async def wait(self) -> None:
        """Return once it is written or failed (a checkpoint, as ``trio.Event.wait``)."""
        if self._done is None:
            self._done = trio.Event()
            if self.finished:
                self._done.set()
        await self._done.wait()


# Subclassed by the PostgreSQL store, which is not compiled.
@mypyc_attr(allow_interpreted_subclasses=True)
class SqliteStore:
    """An ``OrderStore`` on one SQLite file; open it with ``open_sqlite_store``."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["full", "normal"] = "normal",
        sync_interval_s: float = 0.05,
        group_commit: bool = True,
        max_batch: int = 4096,
        linger_s: float = 0.0,
        cache_size: int = 50_000,
        seen_filter_bits: int = 1 << 26,
        writer: Writer = "thread",
        now_ns: Callable[[], int] = time.time_ns,
        fsync: Callable[[int], None] = os.fdatasync,
        probe_interval_s: float = 5.0,
        probe_bytes: int = 64 * 1024,
        max_pages: int | None = None,
        fold_interval_s: float = changelog.FOLD_INTERVAL_S,
        fsync_route: FsyncRoute | None = None,
        fsync_ahead: FsyncAhead | None = None,
        fsync_spin_ns: int = FSYNC_SPIN_NS,
        intake: IntakeGate | None = None,
        max_unfolded: int = changelog.MAX_UNFOLDED,
    ) -> None:
        """``fsync_ahead``: how a ``full`` record's fdatasync is begun ahead (see
        ``record``); by default io_uring where it is offered and ``fsync`` is the real
        one. ``fsync_spin_ns``: how long the trio thread, with nothing else to run,
        watches for such an fdatasync to end before it sleeps (0: never). ``intake``:
        closed while more than ``max_unfolded`` appends and news wait for the fold
        (``runtime/intake.py``)."""
        self.intake = intake
        self.max_unfolded = max_unfolded
        self.path = path
        #: What messages call this journal (the file's path; a redacted URL for a server's).
        self.name = str(path)
        self.synchronous = synchronous
        #: Without a log, the brokers' news (``record_soon``) waits this long at most for a
        #: ``record`` to share its write; with ``normal``, the log is fsynced this long after
        #: an append.
        self.sync_interval_s = sync_interval_s
        self.max_batch = max(1, max_batch) if group_commit else 1
        self.linger_s = linger_s
        self.cache_size = cache_size
        self.writer: Writer = writer
        #: Most time between an append to the log and its fold into the file.
        self.fold_interval_s = fold_interval_s
        self.now_ns = now_ns
        self._fsync = fsync
        self.probe_interval_s = probe_interval_s
        self.probe_bytes = probe_bytes
        #: A cap on the file's size in pages (SQLite ``max_page_count``); None: none.
        self.max_pages = max_pages
        #: Why the file cannot be written now (e.g. "disk full"); None while it can.
        self.unavailable: str | None = None
        #: Brokers' news recorded while unavailable, latest per order, oldest first.
        self._held: dict[str, _Row] = {}
        #: Fills recorded while unavailable, oldest first.
        self._held_fills: list[Fill] = []
        self._availability = trio.Event()
        #: Durable writes (appends to the log; transactions on a server) and records
        #: written, for benchmarks and health.
        self.commits = 0
        self.records = 0
        self._seq = 0
        #: The newest sequence number in the file (the fold's thread): a record folded at or
        #: below it came after a newer one of its order, maybe (``_fold``).
        self._file_seq = 0
        #: An order's history as its reads say it (PostgreSQL's keeps an index by order).
        self.history_sql = HISTORY_SQL
        self._seen = SeenFilter(seen_filter_bits)
        #: The decimals' texts of the news the fold encodes (its thread's, the replay's).
        self._texts = BodyTexts()
        #: Every broker with an order in the journal: asking after another needs no read.
        self._brokers: set[str] = set()
        self._open: dict[str, Order] = {}  # re-inserted on every write: newest last
        self._recent: Recent[str, Order] = Recent(
            cache_size, refresh=True, on_evict=self._out_of_window
        )
        #: Written but not in the file yet (not folded, or not committed): found by ``get``
        #: even once out of the window.
        self._unwritten: dict[str, Order] = {}
        self._by_order_id: dict[str, str] = {}
        #: The client order id ``lacks`` last said the journal surely lacks, until the next
        #: record of any order (``_index``): the router asks, then the broker's step asks
        #: again of the same order, nothing recorded between (None: none).
        self._lacking: str | None = None
        #: The record ``record_now(..., answer_follows=True)`` appended last, alone, until
        #: ``record_answer`` hands it to the fold in its answered state.
        self._answer_of: _Row | None = None
        self._queue: collections.deque[_Batch] = collections.deque()
        self._wake = trio.Event()
        #: The writer task waits for ``_wake`` with no batch in hand.
        self._writer_idle = False
        #: Whether a batch is written here on the trio thread rather than on the writer's
        #: (set once the log is open; an attribute: read on every record). With
        #: ``normal`` the write is one append to the log: a few µs, less than waking a
        #: thread and waiting for it. ``full`` (an fsync) keeps the thread, where later
        #: records gather into the next batch meanwhile (group commit). The writer's
        #: thread is idle meanwhile (only the writer task hands it work, and a ``record``
        #: writes only while that task holds no batch), so the log is never appended to
        #: by two threads at once.
        self._commits_inline = False
        #: With ``full``: whether a ``record`` went ahead of its fsync in this scheduler round.
        self._round = _RoundMark()
        #: Whether ``_round`` is installed as an instrument (while running, if it must be).
        self._marking = False
        #: Set when the batch a ``record`` handed to the writer's thread itself (``full``)
        #: is back; None when none is out. The writer task writes nothing meanwhile.
        self._handed: trio.Event | None = None
        #: Whether such a batch is written on the trio thread, when nothing else is to run.
        self.fsync_route = fsync_route or FsyncRoute()
        self._token: trio.lowlevel.TrioToken | None = None
        #: The writer waits out ``sync_interval_s`` for the news: more news need not wake it.
        self._news_timer = False
        self._failed: BaseException | None = None
        self._closed = False
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._read_lock = trio.Lock()
        self._lock_fd = -1
        self._committer: _Committer = _ToThreadCommitter()
        #: The change log (None until open, and for a store without one: PostgreSQL's).
        self._log: JournalLog | None = None
        self._log_syncer: LogSyncer | None = None
        #: With ``full``, how the fdatasync of a record that returns before it
        #: (``fsync_by_ack``) is begun on the trio thread (None: never); how many were begun
        #: and are done, whose record the one begun last is, the orders whose one failed
        #: (-> why, until their ``durable``), why the last failed (an outage until a probe
        #: folds the log), and whether a task waits for it.
        self.fsync_ahead = fsync_ahead
        #: How the trio thread watches for its end when the loop would sleep (None: never).
        self.idle_spin = IdleSpin(fsync_spin_ns) if fsync_spin_ns > 0 else None
        self._ahead_begun = 0
        self._ahead_done = 0
        self._ahead_coid = ""
        self._ahead_failed: dict[str, str] = {}
        self._ahead_error: OSError | None = None
        self._reaping = False
        self._reaped = trio.Event()

    @property
    def log_syncs(self) -> int:
        """Background fsyncs of the change log so far (``synchronous = "normal"``)."""
        return self._log_syncer.syncs if self._log_syncer is not None else 0

    @property
    def folds(self) -> int:
        """Transactions that folded the change log into the file so far."""
        return self._log.folds if self._log is not None else 0

    # -- opening and closing --------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        # Every fold fsyncs (it is off the loop and batched): a segment of the log is
        # deleted only once the file holds its records durably.
        conn.execute("PRAGMA synchronous = FULL")
        # Freed space is not zeroed: Debian's SQLite is built to zero it by default, ~2,000
        # instructions an order on the fold's thread for content nobody need erase.
        conn.execute("PRAGMA secure_delete = OFF")
        if self.max_pages is not None:
            conn.execute(f"PRAGMA max_page_count = {int(self.max_pages)}")
        return conn

    def _open_sync(self) -> None:
        """Lock, open, migrate and index the file; ``ConfigError`` naming it if it cannot be.

        Every failure here is one a restart cannot fix (a corrupt file, a
        read-only directory, another process holding the lock), so it is a
        ``ConfigError``: ``ult serve`` exits 2 and systemd does not retry.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(
                f"journal directory {self.path.parent} cannot be created: {_why(exc)}"
            ) from None
        self._lock_fd = open_lock_file(Path(f"{self.path}.lock"))
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise ConfigError(
                f"journal {self.path} is in use by another ult process;"
                " stop it or give this one its own state directory"
            ) from None
        try:
            self._open_connections()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(_unopenable(self.path, exc)) from None
        except OSError as exc:
            raise ConfigError(
                f"journal {self.path}: its change log cannot be read or deleted ({exc});"
                " fix the state directory's permissions, then start again"
            ) from None

    def _open_connections(self) -> None:
        self._wconn = wconn = self._connect()
        mode = wconn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigError(f"journal {self.path}: SQLite refused WAL mode (got {mode})")
        migrate(wconn, path=str(self.path))
        self._replay()
        self._rconn = self._connect()
        self._load()

    def _replay(self) -> None:
        """Fold every segment of the log a crash left into the file, then delete them."""
        assert self._wconn is not None
        self._file_seq = int(
            self._wconn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        )
        rows: list[LogRow] = []
        fills: list[FillRow] = []
        for record in changelog.read(self.path):
            rows += record.rows
            fills += record.fills
        if rows or fills:
            self._fold(rows, fills, False)
        segment_log.remove(self.path)

    def _load(self) -> None:
        """Rebuild the in-memory index from the file."""
        assert self._rconn is not None
        conn = self._rconn
        self._seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
        for coid, broker in conn.execute("SELECT client_order_id, broker FROM orders"):
            self._seen.add(coid)
            self._brokers.add(broker)
        for (body,) in conn.execute(
            f"SELECT {ORDER_BODY_SQL} FROM orders WHERE status IN {OPEN_STATUS_SQL} ORDER BY seq"
        ):
            order = decode_order(body)
            self._open[order.client_order_id] = order
            if order.id:
                self._by_order_id[order.id] = order.client_order_id
        # Typed: mypyc cannot compile ``reversed`` over an untyped (Any) list.
        recent: list[tuple[bytes]] = conn.execute(
            f"SELECT {ORDER_BODY_SQL} FROM orders ORDER BY seq DESC LIMIT ?", (self.cache_size,)
        ).fetchall()
        for (body,) in reversed(recent):
            order = decode_order(body)
            self._recent.put(order.client_order_id, order)
            if order.id:
                self._by_order_id[order.id] = order.client_order_id
        self._lacking = None  # the file's orders are known now

    async def _open_store(self) -> None:
        await trio.to_thread.run_sync(self._open_sync)
        try:
            self._log = JournalLog(
                self.path,
                self._fold,
                on_folded=self._in_file,
                on_failed=self._fold_failed,
                interval_s=self.fold_interval_s,
                intake=self.intake,
                max_unfolded=self.max_unfolded,
            )
        except OSError as exc:
            raise ConfigError(
                f"journal {self.path}: its change log cannot be opened ({_why(exc)});"
                " fix the state directory's permissions, then start again"
            ) from None
        self._commits_inline = self.synchronous == "normal"
        if self.synchronous == "normal" and self.sync_interval_s > 0:
            self._log_syncer = LogSyncer(
                self.sync_interval_s, fsync=self._fsync, name=f"log-sync:{self.path.name}"
            )
            self._log_syncer.start()
        if self.synchronous == "full" and self.fsync_ahead is None and self._fsync is os.fdatasync:
            self.fsync_ahead = open_fsync_ahead()
        if self.writer == "thread":
            self._committer = _DedicatedThreadCommitter(f"journal-writer:{self.path.name}")

    def _close_sync(self) -> None:
        for conn in (self._wconn, self._rconn):
            if conn is not None:
                conn.close()
        self._wconn = self._rconn = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    async def _close(self) -> None:
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._wconn is not None:
                await self._commit_queued()
            await self._committer.aclose()
            if self._log is not None:
                await trio.to_thread.run_sync(self._log.close)
            if self._log_syncer is not None:
                await trio.to_thread.run_sync(self._log_syncer.close)
            await trio.to_thread.run_sync(self._close_sync)
        self.fsync_route.close()
        if self.idle_spin is not None:
            self.idle_spin.close()
        if self.fsync_ahead is not None:
            self.fsync_ahead.close()  # one still running ends in the kernel; the log is folded
        error = Internal("the journal closed before this record was written")
        for batch in self._queue:
            batch.error = error
            batch.finish()
        self._queue.clear()

    async def _commit_queued(self) -> None:
        """On close: commit what is still queued (the brokers' news nobody waits for)."""
        while self._handed is not None:
            await self._handed.wait()
        while self._queue and self.unavailable is None and self._failed is None:
            batch = self._queue[0]
            try:
                await self._committer.run(
                    functools.partial(self._write_rows, batch.rows, fills=batch.fills)
                )
            except Exception:
                return  # the rest fails below; reconciliation settles those orders on start
            self._queue.popleft()
            self._committed(batch.rows)
            batch.finish()

    def running(self) -> AbstractAsyncContextManager[SqliteStore]:
        """Open the store, run its writer until the block ends, then close it."""
        return running_beside(self, self._start, self._write_forever, self._stop)

    async def _start(self) -> None:
        await self._open_store()
        self._token = trio.lowlevel.current_trio_token()
        if self._can_hand_over():  # ``normal`` appends need no mark of the round
            trio.lowlevel.add_instrument(self._round)
            self._marking = True

    async def _stop(self) -> None:
        if self._marking:
            trio.lowlevel.remove_instrument(self._round)
            self._marking = False
        await self._close()

    # -- writing ----------------------------------------------------------------

    async def record(
        self, order: Order, *, event: str = "update", fsync_by_ack: bool = False
    ) -> None:
        """Store ``order`` as the latest state of its client order id; return once durable.

        While the journal is unavailable, a ``submit``/``resend`` record raises
        ``JournalUnavailable`` (the order must not leave) and any other is kept
        in memory and returns at once; it is written when the journal recovers.
        ``fsync_by_ack``: with ``full``, a lone record may return once appended (a
        ``kill -9`` keeps it) with its fdatasync begun (``fsync_ahead``); the caller
        awaits ``durable`` before it acknowledges the order.
        """
        written = self.record_now(order, event=event, fsync_by_ack=fsync_by_ack)
        if written is not None:
            await written

    def record_now(
        self,
        order: Order,
        *,
        event: str = "update",
        fsync_by_ack: bool = False,
        answer_follows: bool = False,
    ) -> Awaitable[None] | None:
        """``record`` begun by a plain call: ``None`` once it is as durable as ``record``
        returns it (appended here), else the wait for its batch (to await).

        ``answer_follows``: the caller gives the record's answer (``record_answer``) before
        anything else runs; a record appended here alone then reaches the file in that
        state, as one row, and the log keeps it as made (a replay writes it).
        """
        if self.unavailable is None and self.records_now(fsync_by_ack):
            return self._append_now(order, event, answer_follows)
        batch = self._enqueue(order, event, waited=True)
        if batch is None:
            return None
        if self._commits_here(batch):
            return None
        if not self._hands_over(batch):
            self._wake.set()
        return self._written(batch, order, event)

    def records_now(self, fsync_by_ack: bool = False) -> bool:
        """Whether a ``record_now`` made now would append here (``_append_now``): with
        ``normal``, whenever the writer is idle with nothing queued; with ``full``, only a
        record made ``fsync_by_ack`` whose fdatasync may be begun ahead (``_can_go_ahead``)."""
        if not (self._writer_idle and not self._queue):
            return False
        return self._commits_inline or (fsync_by_ack and self._can_go_ahead())

    def acks_wait(self) -> bool:
        """Whether a record returned before its fdatasync ended (``fsync_by_ack``, ``full``):
        the ack of the order it recorded awaits ``durable`` first."""
        return self._ahead_done != self._ahead_begun

    def _append_now(
        self, order: Order, event: str, answer_follows: bool = False
    ) -> Awaitable[None] | None:
        """``record_now`` while it appends here (``records_now``, the journal available): the
        record, with any news it carries, goes straight to the log without a batch, nothing
        being queued before it. An append that fails is left to the writer, as in
        ``_commits_here``: its rows become the queue's one batch (the wait returned)."""
        row = self._row(order, event)
        assert row is not None  # held only while unavailable
        carries = _carries_news(order, event)
        # With ``full`` (``records_now(fsync_by_ack=True)``): its fdatasync made here when
        # the trio thread may (``_syncs_here``), else begun ahead, not waited for.
        how = _FSYNC
        if not self._commits_inline:
            how = _HERE if self._syncs_here() else _AHEAD
        if answer_follows and not carries:
            return self._append_answered(row, order, event, how)
        rows: list[_Row] = []
        fills: list[Fill] = []
        if carries:
            self._carry_news(rows, fills)
        rows.append(row)
        # Alone, its answer following: the fold takes its row from ``record_answer``.
        answered = answer_follows and len(rows) == 1 and not fills
        try:
            if answered:
                self._append_unfolded(row, how)
            else:
                self._write_rows(rows, fills=fills, how=how)
        except Exception:
            batch = self._open_batch(waited=True)
            batch.rows += rows
            batch.fills += fills
            self._wake.set()
            return self._written(batch, order, event)
        if how == _AHEAD:
            self._went_ahead(order.client_order_id)
        self._committed(rows)
        if answered:
            self._answer_of = row
        return None

    def _append_answered(
        self, row: _Row, order: Order, event: str, how: int
    ) -> Awaitable[None] | None:
        """``_append_now`` of a record alone (carrying no news) whose answer follows: no
        lists made for its rows and fills."""
        try:
            self._append_unfolded(row, how)
        except Exception:
            batch = self._open_batch(waited=True)
            batch.rows.append(row)
            self._wake.set()
            return self._written(batch, order, event)
        if how == _AHEAD:
            self._went_ahead(order.client_order_id)
        self.commits += 1  # ``_committed([row])``: with a log, memory keeps it until folded
        self.records += 1
        self._answer_of = row
        return None

    def record_answer(self, order: Order) -> None:
        """The answer to the record ``record_now(..., answer_follows=True)`` made last:
        ``order``, that order's state now (the record's own order if none came). Appended
        here alone, that record reaches the file in this state, as itself (its sequence
        number, event and time), handed to the fold like ``record_soon``'s news: one
        ``events`` row and one body where the record and its answer made two; a replay
        of the log writes the record as made, unless the file has it already. Otherwise
        (its append left to the writer, or carrying news) ``order`` is ``record_soon``'s."""
        # Read as a tuple of anything: compiled, a typed row's integers would be unboxed
        # here only to be boxed again into the answered row.
        row: Any = self._answer_of
        if row is None:
            self.record_soon(order)
            return
        self._answer_of = None
        answered: tuple[Any, Any, Any, Order] = (row[0], row[1], row[2], order)
        self._index_answer(row[3], order)
        if self.unavailable is not None:
            self._hold(answered)
            return
        log = self._log
        assert log is not None  # only a log's append is answered so
        log.news(answered)

    async def _written(self, batch: _Batch, order: Order, event: str) -> None:
        """The rest of ``record``: wait until the writer wrote ``batch`` (``order``'s)."""
        await batch.wait()
        if batch.error is None:
            return
        if not self._is_outage(batch.error):
            raise Internal(f"journal write failed: {batch.error}") from batch.error
        if event not in _BEFORE_SENDING:
            return  # the broker's news: held by the writer, written on recovery
        raise self._refusal(order, event)

    def _commits_here(self, batch: _Batch) -> bool:
        """Commit ``batch`` in the calling task if the writer is idle and nothing is queued
        before it (see the module doc); True if it is committed. A failure is left to the
        writer: the batch goes back to the head of the queue, and the writer's attempt
        fails or succeeds as any other."""
        if not (
            self._writer_idle
            and len(self._queue) == 1
            and self._queue[0] is batch
            and self._commits_inline
        ):
            return False
        self._queue.popleft()
        try:
            self._write_rows(batch.rows, fills=batch.fills)
        except Exception:
            self._queue.appendleft(batch)
            return False
        self._committed(batch.rows)
        batch.finish()
        return True

    def _syncs_here(self) -> bool:
        """With ``full``, whether a lone record that may go ahead (``_can_go_ahead``) is
        fdatasynced here instead, on the trio thread, before it returns: while the loop has
        nothing else to run and ``fsync_route`` finds this thread runs again promptly after
        its I/O. The thread would spend the disk's time watching the ring anyway
        (``durable_now``), and the ring's fdatasync, run by a kernel worker woken on another
        core, took ~60-110 us longer here than a plain one, more than the order's own work
        it overlaps (docs/performance.md, "a lone `full` order's fdatasync made on the trio
        thread"). The record is then durable before its order leaves, and the ack waits for
        nothing. On a busy machine the ring goes on serving it (and ``IdleSpin`` its watch)."""
        return _idle_loop() is not None and self.fsync_route.choose()

    def _went_ahead(self, coid: str) -> None:
        """``coid``'s record was appended with its fdatasync begun, not waited for."""
        self._round.appended = True  # the rest of this round's records share a fsync
        self._ahead_begun += 1
        self._ahead_coid = coid
        if self.idle_spin is not None:
            self._round.idle = self._spin_ahead

    def _spin_ahead(self, timeout: float) -> None:
        """As the loop is about to sleep (for up to ``timeout`` s) with the fdatasync begun
        ahead still running: watch for its end a while on this thread instead, so that
        the ack waiting for it runs at once (``_RoundMark.idle``, ``IdleSpin``)."""
        ahead, spin = self.fsync_ahead, self.idle_spin
        if ahead is not None and spin is not None and self._ahead_done != self._ahead_begun:
            spin(ahead, int(timeout * 1e9))

    def _can_go_ahead(self) -> bool:
        """Whether a lone record may return before its fdatasync: with ``full``, none went
        ahead in this scheduler round, no such fdatasync running, nothing handed to the
        writer's thread and no record of this round waiting for one (a record that waits
        for its fsync never shares a batch that returns before it)."""
        return (
            self.fsync_ahead is not None
            and not self._round.appended
            and self._ahead_done == self._ahead_begun
            and self._handed is None
            and self._round.round_end is None
            and self._can_hand_over()
        )

    async def durable(self, client_order_id: str) -> None:
        """Return once the fdatasyncs begun so far for records that returned before them
        (``fsync_by_ack``) are done (any other record returned durable).
        ``JournalUnavailable`` if ``client_order_id``'s failed: the order was sent and is in
        the log, but a machine crash may take it (until a probe folds the log)."""
        # Every one begun, not only this order's: one whose waiter was cancelled is reaped
        # by the next, and the next record may go ahead again.
        begun = self._ahead_begun
        while self._ahead_done < begun:
            await self._reap_ahead()
        self._raise_if_ahead_failed(client_order_id)

    def durable_now(self, client_order_id: str) -> bool:
        """``durable`` by a plain call, when the loop has nothing else to run: the trio
        thread watches the fdatasync begun ahead for its end right here, for up to
        ``fsync_spin_ns`` (``IdleSpin``, with its pause; never past the loop's next
        deadline). True once durable (``JournalUnavailable`` as ``durable``), False if it
        was not watched for or did not end meanwhile (then await ``durable``).

        What it spares a lone ``full`` order is the awaited rest of its step: the step's
        cancel scope, the task's sleep on the ring's eventfd and the wake-ups that end it
        (docs/performance.md, "a `full` order acked in its plain step"). It watches only
        while no other task is runnable (``tasks_runnable``), as the idle watch does only
        as the loop would sleep: a request read with others, or any other task's work,
        is never held up by it."""
        ahead, spin = self.fsync_ahead, self.idle_spin
        if self._ahead_done != self._ahead_begun:
            if ahead is None or spin is None or self._reaping:
                return False
            stats = _idle_loop()
            if stats is None:
                return False
            spin(ahead, max(0, int(stats.seconds_to_next_deadline * 1e9)))
            self._round.idle = None  # watched here: not once more as the loop idles
            try:
                if not ahead.ended():
                    return False
            except OSError as exc:
                self._ahead_failed_with(exc)
            self._ahead_done = self._ahead_begun  # one at a time: this was the one running
        self._raise_if_ahead_failed(client_order_id)
        return True

    def _raise_if_ahead_failed(self, client_order_id: str) -> None:
        why = self._ahead_failed.pop(client_order_id, None)
        if why is not None:
            raise JournalUnavailable(
                f"journal {self.name} cannot be written ({why}): order {client_order_id} was"
                f" sent and may be at the broker, so its outcome is unknown; check with"
                f" `ult order {client_order_id}`"
            )

    def _ahead_failed_with(self, exc: OSError) -> None:
        """The fdatasync begun ahead failed: its order's ack fails, and what it covered
        may not be on the disk: an outage until a probe folds the log into the file
        (durably), as after a failed fold."""
        self._ahead_failed[self._ahead_coid] = self._outage_reason(exc)
        self._ahead_error = exc
        self._wake.set()

    async def _reap_ahead(self) -> None:
        """Wait for the fdatasync begun ahead (one task waits on it; the others for that)."""
        if self._reaping:
            await self._reaped.wait()
            return
        assert self.fsync_ahead is not None
        self._reaping = True
        try:
            begun = self._ahead_begun  # one at a time: this is the one running
            try:
                await self.fsync_ahead.done()
            except OSError as exc:
                self._ahead_failed_with(exc)
            self._ahead_done = begun
        finally:
            self._reaping = False
            self._reaped.set()
            self._reaped = trio.Event()

    def _hands_over(self, batch: _Batch) -> bool:
        """With ``full``: if the writer task is idle, ``batch`` goes to the writer's thread
        from here as this scheduler round ends, with every record the round adds to it;
        True if it will (the writer task need not be woken).

        The writer task is neither woken to take it nor to hand it back: the thread's
        answer finishes the batch itself (``_handed_back``), two scheduler rounds fewer
        on a lone order's path. Records of later rounds gather for the writer task, which
        waits for the answer before it writes them (one fsync for all of them)."""
        if not (
            self._writer_idle
            and self._handed is None
            and len(self._queue) == 1
            and self._queue[0] is batch
            and self._can_hand_over()
        ):
            return False
        self._round.round_end = self._hand_over_queued
        return True

    def _hand_over_queued(self, idle: bool) -> None:
        """As a round ends: the batch ``_hands_over`` kept goes to the writer's thread,
        unless the writer task woke meanwhile (then it is the writer's). With nothing else
        for the loop to run (``idle``), it may be written right here instead, on the trio
        thread (``fsync_route``), and come back the same way."""
        committer = self._committer
        if not (self._writer_idle and self._handed is None and len(self._queue) == 1):
            self._wake.set()
            return
        assert isinstance(committer, _DedicatedThreadCommitter)
        batch = self._queue.popleft()
        self._handed = trio.Event()
        token = self._token
        assert token is not None  # set as the store starts running
        write = functools.partial(self._write_rows, batch.rows, fills=batch.fills)
        if idle and self.fsync_route.choose():
            # The writer's thread holds no batch (``_handed`` was None), so the log still
            # has one appender at a time. The loop chose its wait before this hook ran:
            # ``run_sync_soon`` wakes it, so the batch's waiters run at once.
            error: BaseException | None = None
            try:
                self.fsync_route.write_here(write)
            except Exception as exc:
                error = exc
            token.run_sync_soon(self._handed_back, batch, error)
            return

        def done(_: Any, error: BaseException | None) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._handed_back, batch, error)

        committer.submit(write, done)

    def _handed_back(self, batch: _Batch, error: BaseException | None) -> None:
        """The writer's thread (or the trio thread) is done with a batch ``_hands_over``
        kept. A failure is left to the writer task, as in ``_commits_here``: the batch goes
        back to the head of the queue (nothing of it was kept: ``JournalLog.append``)."""
        handed, self._handed = self._handed, None
        if error is None:
            self._committed(batch.rows)
            batch.finish()
        else:
            self._queue.appendleft(batch)
            self._wake.set()
        if handed is not None:
            handed.set()

    def record_soon(self, order: Order, *, event: str = "update") -> None:
        """Store ``order`` like ``record`` without waiting for it (the brokers' news).

        Visible to ``get`` at once and written with the next fold (with a
        store without a log, the next batch); a crash before that loses the
        record, and restart reconciliation asks the broker again. Not for a record that must be on disk before an
        order leaves (``submit``, ``resend``): those go through ``record``.
        """
        if event in _BEFORE_SENDING:
            raise Internal(f"a {event!r} record must be durable before the order leaves")
        if self._log is not None:
            row = self._row(order, event)
            if row is not None:  # to the fold's thread, not the log: nobody waits for it
                self._log.news(row)
        elif self._enqueue(order, event, waited=False) is not None:
            self._wake_for(waited=False)

    def record_fill(self, fill: Fill) -> None:
        """Store one execution once (keyed by broker and fill id), written in the background
        like ``record_soon``; held in memory while the file cannot be written."""
        if self._failed is not None or self._closed:
            raise Internal(f"journal {self.name} is not writable: {self._failed or 'closed'}")
        if self.unavailable is not None:
            self._held_fills.append(fill)
            return
        if self._log is not None:
            self._log.news(fill)
            return
        self._open_batch(waited=False).fills.append(fill)
        self._wake_for(waited=False)

    def _open_batch(self, *, waited: bool) -> _Batch:
        batch = self._queue[-1] if self._queue else None
        if batch is None or len(batch.rows) + len(batch.fills) >= self.max_batch:
            batch = _Batch(waited)
            self._queue.append(batch)
        return batch

    def _row(self, order: Order, event: str) -> _Row | None:
        """Number and index ``order``'s record (refused if it may not be made now); its row
        (None: held, the journal being unavailable)."""
        if self._answer_of is not None:
            # An answer never given (``record_answer``): the record reaches the file as made,
            # before anything recorded after it.
            self.record_answer(self._answer_of[3])
        if self._failed is not None or self._closed:
            raise Internal(f"journal {self.name} is not writable: {self._failed or 'closed'}")
        if self.unavailable is not None and event in _BEFORE_SENDING:
            raise self._refusal(order, event)
        self._seq += 1
        row = (self._seq, event, self.now_ns(), order)
        self._index(order)
        if self.unavailable is not None:
            self._hold(row)
            return None
        return row

    def _enqueue(self, order: Order, event: str, *, waited: bool) -> _Batch | None:
        """Index ``order`` and queue its row; the batch it will commit in (None: held)."""
        row = self._row(order, event)
        if row is None:
            return None
        batch = self._open_batch(waited=waited)
        if self._log is not None and _carries_news(order, event):
            self._carry_news(batch.rows, batch.fills)
        batch.rows.append(row)
        batch.waited = batch.waited or waited
        return batch

    def _carry_news(self, rows: list[_Row], fills: list[Fill]) -> None:
        """Put the news not folded yet (the log's) in ``rows`` and ``fills``: see
        ``_carries_news``."""
        assert self._log is not None
        for item in self._log.take_unfolded_news():
            if isinstance(item, Fill):
                fills.append(item)
            else:
                rows.append(item)

    def _wake_for(self, *, waited: bool) -> None:
        """Wake the writer for what was just queued, unless it is news the writer's
        running timer covers (the next ``record`` takes it, or the timer's end writes it)."""
        if waited or not self._news_timer or len(self._queue) > 1:
            self._wake.set()

    def _settle_failed(self, rows: list[_Row]) -> None:
        """After an outage hit ``rows``: hold the brokers' news, undo what never left.

        Done here, not by each waiter, since a waiter may have been cancelled.
        """
        for row in rows:
            event, order = row[1], row[3]
            if event not in _BEFORE_SENDING:
                self._hold(row)
                continue
            coid = order.client_order_id
            if self._unwritten.get(coid) is order:
                del self._unwritten[coid]
            if event == "submit":  # refused: it never happened
                if self._open.get(coid) is order:
                    del self._open[coid]
                if self._recent.get(coid) is order:
                    self._recent.pop(coid)

    def _hold(self, row: _Row) -> None:
        coid = row[3].client_order_id
        self._held.pop(coid, None)  # re-inserted: the dict stays in seq order
        self._held[coid] = row

    def _refusal(self, order: Order, event: str) -> JournalUnavailable:
        coid = order.client_order_id
        why = f"journal {self.name} cannot be written ({self.unavailable or 'write failed'})"
        if event == "submit":
            return JournalUnavailable(
                f"{why}: order {coid} was not sent; new orders are refused until the journal"
                " can be written again (cancels, queries and the kill switch still work)"
            )
        return JournalUnavailable(
            f"{why}: order {coid} was sent before and may be at the broker, so its outcome"
            f" is unknown; check with `ult order {coid}`"
        )

    async def availability_changed(self) -> None:
        """Return at the next change of ``unavailable``."""
        await self._availability.wait()

    def _set_unavailable(self, reason: str | None) -> None:
        if reason != self.unavailable:
            self.unavailable = reason
            self._availability.set()
            self._availability = trio.Event()

    def _index(self, order: Order) -> None:
        # Not added to the id filter here: the thread that writes it to the file does
        # (``_fold``), and until then ``get`` finds it in ``_unwritten``.
        # Into the window of recent orders once in the file (``_forget_written``), not
        # here: an order's records before its fold (a submit, then its fill) put it once.
        # ``in`` and ``del``, not ``pop(coid, None)``: compiled, a method call each.
        self._lacking = None  # whatever ``lacks`` said last may not hold now
        coid = order.client_order_id
        self._brokers.add(order.broker)
        unwritten, open_ = self._unwritten, self._open
        if coid in unwritten:
            del unwritten[coid]  # re-inserted: newest last
        unwritten[coid] = order
        if coid in open_:
            del open_[coid]
        if order.status in _OPEN:
            open_[coid] = order
        order_id = order.id  # read once: compiled, each read is a look-up
        if order_id:
            self._by_order_id[order_id] = coid

    def _index_answer(self, made: Order, order: Order) -> None:
        """``_index(order)``, ``order`` being the answer to ``made``, the record indexed last
        (nothing is recorded between a record and its answer: ``_row`` gives an unanswered
        one first): its entries are replaced where they are, the newest already, and its
        broker is known. Otherwise (a failed append took it out) ``_index``."""
        coid = made.client_order_id
        unwritten, open_ = self._unwritten, self._open
        if unwritten.get(coid) is not made:
            self._index(order)
            return
        if order is made:
            return  # the record's own order as its answer: indexed as it is
        unwritten[coid] = order
        if order.status in _OPEN:
            open_[coid] = order  # the record's own place (a submit's is open), or the newest
        elif coid in open_:
            del open_[coid]
        order_id = order.id
        if order_id:
            self._by_order_id[order_id] = coid

    def _out_of_window(self, coid: str, order: Order) -> None:
        # Out of the window of recent orders: its order id is looked up in the file
        # from now on, unless the order is still open (open orders stay in memory) or a
        # later state of it is not in the file yet (it comes back to the window once it is).
        if order.id and coid not in self._open and coid not in self._unwritten:
            self._by_order_id.pop(order.id, None)

    def _write_rows(
        self,
        rows: list[_Row],
        *,
        fills: list[Fill] | None = None,
        probe: bool = False,
        how: int = _FSYNC,
    ) -> None:
        """Make ``rows`` and ``fills`` durable: one append to the change log (fsynced before
        it returns with ``full``, as ``how`` says: ``_sync``). ``probe`` (an
        outage's probe): then fold everything into the file at once, with room to grow
        checked; the outage ends only if that works."""
        log = self._writable_log(probe)
        if rows or fills:
            sync = self._sync(how)
            # An order's reports in one batch (its answer, then the stream's) are folded
            # before they are encoded: the fold would keep only the last of them anyway.
            # (A lone record, an inline append's, has nothing to fold.)
            kept = rows if len(rows) == 1 else _folded(rows, _order_and_event)
            if len(kept) == 1 and not fills:  # an order's own record, as a rule: lone
                seq, event, ts, order = kept[0]
                segment = log.append_one(seq, event, ts, order, kept, sync=sync)
            else:
                # Unpacked, not ``log_row(*row)``: compiled, a star call is a generic one.
                logged = [log_row(seq, event, ts, order) for seq, event, ts, order in kept]
                fill_rows = [fill_row(f) for f in fills] if fills else []
                segment = log.append(logged, fill_rows, kept, sync=sync)
            if self._log_syncer is not None:
                self._log_syncer.appended(segment)
        if probe:
            log.retry()
            self._ahead_error = None  # the file holds what the log held, durably

    def _append_unfolded(self, row: _Row, how: int = _FSYNC) -> None:
        """``_write_rows([row])`` whose row the fold takes later, from ``record_answer``."""
        log = self._writable_log(probe=False)
        seq, event, ts, order = row
        # Nothing to forget once folded: the answer's news does that (``_NOTHING``).
        sync = self._sync(how)
        segment = log.append_one(seq, event, ts, order, _NOTHING, sync=sync, fold=False)
        if self._log_syncer is not None:
            self._log_syncer.appended(segment)

    def _writable_log(self, probe: bool) -> JournalLog:
        """The log, if an append to it may be made now (a ``probe`` may make one after a
        failed fold); the outage's error otherwise."""
        log = self._log
        assert log is not None
        if not probe and log.failure is not None:
            raise log.failure  # the file cannot take what the log holds: an outage
        if not probe and self._ahead_error is not None:
            raise self._ahead_error  # the log may not be on the disk: an outage
        if self._log_syncer is not None and self._log_syncer.last_error is not None:
            # What was appended may not reach the disk: an outage until an fsync works.
            raise OSError(errno.EIO, self._log_syncer.last_error)
        return log

    def _sync(self, how: int = _FSYNC) -> Callable[[int], None] | None:
        """What an append fsyncs its segment with before it returns (None: nothing): with
        ``full``, ``fsync``; the ring's start (``_AHEAD``: begun, not waited for); or
        ``fsync`` timed for ``fsync_route`` (``_HERE``: on the trio thread)."""
        if self.synchronous != "full":
            return None
        if how == _AHEAD and self.fsync_ahead is not None:
            return self.fsync_ahead.start
        return self._fsync_here if how == _HERE else self._fsync

    def _fsync_here(self, fd: int) -> None:
        """A lone record's fdatasync made on the trio thread (``_syncs_here``), timed for
        ``fsync_route``."""
        self.fsync_route.write_here(functools.partial(self._fsync, fd))

    def _fold(
        self, rows: Sequence[LogRow | Record], fills: Sequence[FillRow | Fill], probe: bool
    ) -> None:
        """One transaction writing what the log holds into the tables (the fold's thread;
        the replay at open): the appended records (``LogRow``), and the brokers' news as it
        was handed over (``Record``, ``Fill``), encoded here, a few at a time."""
        conn = self._wconn
        assert conn is not None
        kept, last = _kept(rows)
        first: dict[str, Any] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            # A statement round at a time: the news's encodes and the binds hold the GIL,
            # each statement's step lets go of it, so the trio thread waits at most for one
            # round's Python (``_ROUND`` records and fills), not for a whole fold's.
            for start in range(0, max(len(kept), len(fills)), _ROUND):
                _round(conn, kept, last, start, start + _ROUND, first, fills, self._texts)
            # A record at or below the file's newest sequence number came after a newer one
            # of its order (news overtaking a record's append, a replay): its order's first
            # write may be older than the file says. ``kept`` is by sequence: they lead it.
            file_seq = self._file_seq
            for logged in kept:
                seq: int = logged[0]
                if seq > file_seq:
                    break
                coid = _order_and_event_of(logged)[0]
                conn.execute(_EARLIER_FIRST, (seq, coid))
            if probe:
                conn.execute(_PROBE, (self.probe_bytes,))
                conn.execute(_UNPROBE)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after some errors (SQLITE_FULL among them).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if kept and kept[-1][0] > self._file_seq:
            self._file_seq = kept[-1][0]
        # Off the trio thread, before the trio side drops these orders from ``_unwritten``.
        self._seen.add_all(last)

    def _in_file(self, batches: list[list[_Row]]) -> None:
        """The file holds these batches now: memory need not keep them for it."""
        for rows in batches:
            if rows:  # not an answered record's append (``_NOTHING``)
                self._forget_written(rows)

    def _fold_failed(self, error: BaseException) -> None:
        """The file cannot take what the log holds: an outage (or a bug) the writer handles."""
        if self._is_outage(error):
            self._set_unavailable(self._outage_reason(error))
        self._wake.set()

    def _file_failed(self) -> BaseException | None:
        """Why the file cannot take what the log holds (a failed fold), if it cannot, or
        why the log may not be on the disk (a failed fdatasync begun ahead)."""
        if self._log is not None and self._log.failure is not None:
            return self._log.failure
        return self._ahead_error

    async def _write_forever(self) -> None:
        """The single writer: commit queued batches in order, one transaction each."""
        while True:
            while not self._queue and self._file_failed() is None:
                await self._idle_until_woken()
            fold_error = self._file_failed()
            if not self._queue and fold_error is not None:
                # The fold failed with nothing queued: probe until the file takes it all.
                if not self._is_outage(fold_error):
                    self._failed = fold_error  # a bug, not the disk: as a failed write below
                    raise fold_error
                self._set_unavailable(self._outage_reason(fold_error))
                await self._probe_until_writable()
                continue
            if not await self._news_waits_for_a_record():
                continue  # a ``record`` committed the news with its own batch
            if self.linger_s > 0 and len(self._queue[0].rows) < self.max_batch:
                await trio.sleep(self.linger_s)
            while self._handed is not None:  # one batch on the writer's thread at a time
                await self._handed.wait()
            batch = self._queue.popleft()
            write = functools.partial(self._write_rows, batch.rows, fills=batch.fills)
            try:
                if self._commits_inline:
                    write()
                else:
                    await self._committer.run(write)
            except Exception as exc:
                outage = self._is_outage(exc)
                for failed in (batch, *self._queue):
                    if outage:
                        self._settle_failed(failed.rows)
                        self._held_fills.extend(failed.fills)
                    failed.error = exc
                    failed.finish()
                self._queue.clear()
                if not outage:
                    # A bug, not the disk: crash the journal actor; its restart reopens.
                    self._failed = exc
                    raise
                self._set_unavailable(self._outage_reason(exc))
                await self._probe_until_writable()
                continue
            self._committed(batch.rows)
            batch.finish()

    def _is_outage(self, exc: BaseException) -> bool:
        """Whether a failed write is the storage's doing (an outage), not the code's."""
        return _is_outage(exc)

    def _outage_reason(self, exc: BaseException) -> str:
        """A short, stable description of an outage for health and STATUS."""
        return _outage_reason(exc)

    def _can_hand_over(self) -> bool:
        """Whether a ``record`` hands its batch to the writer's thread itself (``full``, the
        dedicated thread): see ``_hands_over``."""
        return (
            self.synchronous == "full"
            and self._log is not None
            and isinstance(self._committer, _DedicatedThreadCommitter)
        )

    async def _news_waits_for_a_record(self) -> bool:
        """A batch of only the brokers' news (a store without a log: the SQLite journal hands
        its news to the fold) waits up to ``sync_interval_s`` from its opening
        for a record someone waits for (the next ``submit``): the two share one commit
        (one fsync with ``full``), and the news never puts a commit in front of an order.
        One timer serves many orders' news: when a ``record`` appends the news with its
        own batch, the writer keeps waiting, and news queued meanwhile does not wake it
        (``_wake_for``); at the timer's end it waits on for news younger than the interval.
        False if nothing is queued then (or the fold failed): the writer looks again."""
        if self._queue[0].waited:
            return True
        self._news_timer = True
        try:
            due = self._queue[0].since + self.sync_interval_s
            while True:
                with trio.move_on_at(due):
                    while self._file_failed() is None and (not self._queue or self._news_alone()):
                        await self._idle_until_woken()
                if not self._queue or not self._news_alone() or self._file_failed() is not None:
                    break
                due = self._queue[0].since + self.sync_interval_s
                if due <= trio.current_time():
                    break
        finally:
            self._news_timer = False
        return bool(self._queue)

    def _news_alone(self) -> bool:
        """Whether the queue holds one batch, of only the brokers' news."""
        return len(self._queue) == 1 and not self._queue[0].waited

    async def _idle_until_woken(self) -> None:
        """Wait for ``_wake`` with nothing in hand: a ``record`` may commit meanwhile."""
        self._wake = trio.Event()
        self._writer_idle = True
        try:
            await self._wake.wait()
        finally:
            self._writer_idle = False

    def _committed(self, rows: list[_Row]) -> None:
        self.commits += 1
        self.records += len(rows)
        if self._log is None:  # else memory keeps them until folded (``_folded``)
            self._forget_written(rows)

    async def _probe_until_writable(self) -> None:
        """While unavailable: every ``probe_interval_s``, try to write the held records
        plus ``probe_bytes`` more; the first success makes the journal available again."""
        while self.unavailable is not None:
            await trio.sleep(self.probe_interval_s)
            rows = list(self._held.values())
            fills = list(self._held_fills)
            try:
                write = functools.partial(self._write_rows, rows, fills=fills, probe=True)
                await self._committer.run(write)
            except Exception as exc:
                if not self._is_outage(exc):
                    self._failed = exc
                    raise
                self._set_unavailable(self._outage_reason(exc))
                continue
            for row in rows:
                coid = row[3].client_order_id
                held = self._held.get(coid)
                # Unless held again meanwhile. The order, not the row: compiled, a row is a
                # C struct boxed anew each time it is read, so a row is never the same object.
                if held is not None and held[3] is row[3]:
                    del self._held[coid]
            del self._held_fills[: len(fills)]  # later ones were appended after these
            self._committed(rows)
            if not self._held and not self._held_fills:
                self._set_unavailable(None)

    def _forget_written(self, rows: list[_Row]) -> None:
        """These rows are in the file now: only later writes, not in it yet, stay here; an
        order's latest state in the file joins the window of recent orders."""
        # Each row read as a tuple of anything: compiled, a typed row is unboxed (its
        # integers converted) only to take its order.
        unwritten = self._unwritten
        items: list[Any] = rows
        for row in items:
            order: Order = row[3]
            coid = order.client_order_id
            if unwritten.get(coid) is order:
                del unwritten[coid]
                self._recent.put(coid, order)

    # -- reading ----------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._read_lock:
            conn = self._rconn
            if conn is None:
                raise Internal(f"journal {self.name} is closed")
            return await trio.to_thread.run_sync(fn, conn)

    def _in_memory(self, client_order_id: str) -> Order | None:
        # Memory first: a few dict lookups, where the filter hashes four times.
        return (
            self._unwritten.get(client_order_id)
            or self._open.get(client_order_id)
            or self._recent.get(client_order_id)
        )

    def lacks(self, client_order_id: str) -> bool:
        """Whether the journal surely has no record of ``client_order_id`` (no read)."""
        # The same id again, nothing recorded since (``_lacking``): the same answer, without
        # three look-ups and the filter's four hashes. By identity: the router and the
        # broker's step ask with the request's own string.
        if client_order_id is self._lacking:
            return True
        if self._in_memory(client_order_id) is not None or client_order_id in self._seen:
            return False
        self._lacking = client_order_id
        return True

    async def get(self, client_order_id: str) -> Order | None:
        """The latest state of one order by client order id."""
        order = self._in_memory(client_order_id)
        if order is not None:
            return order
        if client_order_id not in self._seen:
            return None  # never journaled: no need to ask the file

        def read(conn: sqlite3.Connection) -> Order | None:
            row = conn.execute(
                f"SELECT {ORDER_BODY_SQL} FROM orders WHERE client_order_id = ?",
                (client_order_id,),
            ).fetchone()
            return decode_order(row[0]) if row else None

        return await self._read(read)

    async def get_by_order_id(self, order_id: str) -> Order | None:
        """The latest state of one order by broker order id."""
        if not order_id:
            return None
        coid = self._by_order_id.get(order_id)
        if coid is not None:
            return await self.get(coid)

        def read(conn: sqlite3.Connection) -> Order | None:
            row = conn.execute(
                f"SELECT {ORDER_BODY_SQL} FROM orders WHERE order_id = ? ORDER BY seq DESC LIMIT 1",
                (order_id,),
            ).fetchone()
            return decode_order(row[0]) if row else None

        return await self._read(read)

    async def find_by_order_id(self, order_id: str) -> list[Order]:
        """Every order, at any broker, whose broker order id is ``order_id``.

        Broker ids are unique only per connection, so there may be several.
        """
        if not order_id:
            return []

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT client_order_id FROM orders WHERE order_id = ?", (order_id,)
            )
            return [row[0] for row in rows]

        # Not in the file yet (not folded, or held while it cannot be written): taken
        # before the file is read, since a fold landing meanwhile drops it from memory.
        coids = {o.client_order_id for o in self._unwritten.values() if o.id == order_id}
        coids.update(await self._read(read))
        found = [await self.get(coid) for coid in sorted(coids)]
        # A client order id whose order since got another id is no match.
        return [o for o in found if o is not None and o.id == order_id]

    async def list_orders(
        self, *, open_only: bool = False, broker: str | None = None, limit: int = 1000
    ) -> list[Order]:
        """Orders, most recently changed first."""
        if open_only:
            out = []
            for order in reversed(self._open.values()):
                if broker is None or order.broker == broker:
                    out.append(order)
                    if len(out) >= limit:
                        break
            return out
        if broker is not None and broker not in self._brokers:
            # No thread round trip: a service starting 1,000 brokers asks this of each.
            return []

        def read(conn: sqlite3.Connection) -> list[Order]:
            if broker is None:
                rows = conn.execute(
                    f"SELECT {ORDER_BODY_SQL} FROM orders ORDER BY seq DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {ORDER_BODY_SQL} FROM orders WHERE broker = ?"
                    " ORDER BY seq DESC LIMIT ?",
                    (broker, limit),
                ).fetchall()
            return [decode_order(row[0]) for row in rows]

        # Not in the file yet (news waiting for a write, records not folded yet, or held
        # while the disk is full):
        # the latest changes of all, and the file has an older state of them or none.
        newest = [o for o in reversed(self._unwritten.values()) if broker in (None, o.broker)]
        listed = await self._read(read)
        pending = {o.client_order_id for o in newest}
        return [*newest, *(o for o in listed if o.client_order_id not in pending)][:limit]

    async def non_terminal(self, broker: str | None = None) -> list[Order]:
        """Every order not yet final, oldest change first."""
        return [o for o in self._open.values() if broker is None or o.broker == broker]

    async def cost_inputs(self, query: ReportQuery) -> CostInputs:
        """Read on a connection of its own as the report is built: a long report never
        holds up the service's own reads. What was recorded before the call is in the
        file first (unless it cannot be written: then the report lacks the held news)."""
        await self.in_file()
        return JournalCostInputs(self.path, query)

    async def in_file(self) -> None:
        """Return once every record made before the call is in the file: written, and
        folded from the log into the tables (at once while the file cannot be written:
        what it cannot take is in memory and in the log)."""
        if self._queue and self.unavailable is None:
            await self._queue[-1].wait()
        if self._log is not None and self.unavailable is None:
            await self._log.in_file()

    async def history(self, client_order_id: str) -> list[JournalEvent]:
        """Every journaled state of one order, oldest first."""
        await self.in_file()

        def read(conn: sqlite3.Connection) -> list[JournalEvent]:
            rows = conn.execute(self.history_sql, (client_order_id,)).fetchall()
            events = [
                JournalEvent(seq=s, event=e, ts=t, order=decode_order(b)) for s, e, t, b in rows
            ]
            # A row naming no order (schema 12) is read if its body holds the id's bytes:
            # another order's body may (a replacement's ``replaces``, a longer id).
            return [e for e in events if e.order.client_order_id == client_order_id]

        return await self._read(read)


def table_rows(
    rows: list[_Row], fills: list[Fill]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What one batch writes, as parameter rows: ``events`` rows, ``orders`` rows (one per
    order, its latest state, with its body: PostgreSQL's ``orders`` keeps a copy of it)
    and ``fills`` rows, in the tables' column order."""
    kept = _folded(rows, _order_and_event)
    events, latest = tables([log_row(*row) for row in kept])
    bodies = {event[0]: event[4] for event in events}  # seq -> body
    return events, [(*row, bodies[row[5]]) for row in latest], [fill_row(f) for f in fills]


def tables(rows: list[LogRow]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ``events`` and ``orders`` rows (one per order, its latest state) of the records
    ``rows`` (in any order) as one transaction writes them."""
    kept, last = _kept(rows)
    return _table_rows(kept, last)


def _kept(rows: Sequence[LogRow | Record]) -> tuple[list[LogRow | Record], dict[str, int]]:
    """The records of ``rows`` (in any order) that ``events`` gets, by sequence number,
    each run of an order's updates cut to its last (as ``_folded`` cuts them); and each
    order's last among them (its index), the one ``orders`` gets."""
    kept: list[LogRow | Record] = []
    last: dict[str, int] = {}
    # Where each order's run of updates at the end of ``kept`` so far is (``_folded``'s
    # rule, in the same pass as ``last``: each row's keys read once, by a direct call,
    # not through ``_folded``'s ``key``, a call through Python's protocol per row).
    runs: dict[str, int] = {}
    # By sequence number, not as they came: a submit still waiting for its append reaches
    # the fold after the news of it, and its older state must not replace the newer.
    for row in sorted(rows, key=seq_of):
        coid, event = _order_and_event_of(row)
        if event == "update":
            at = runs.get(coid)
            if at is not None:
                kept[at] = row  # the later state wins, at the earlier's place (still its last)
                continue
            runs[coid] = len(kept)
        elif coid in runs:  # a test, not ``pop``: a method call, and mostly there is none
            del runs[coid]
        last[coid] = len(kept)
        kept.append(row)
    return kept, last


def _table_rows(
    kept: list[LogRow | Record], last: dict[str, int]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ``events`` and ``orders`` rows of ``kept`` (``_kept``), a news record's body
    encoded here, in the tables' column order (``tables``)."""
    events: list[tuple[Any, ...]] = []
    latest: list[tuple[Any, ...]] = []
    for i, row in enumerate(kept):
        logged: tuple[Any, ...] = row
        if len(logged) == _NEWS_ITEMS:
            logged = log_row(*logged)  # the brokers' news, encoded here
        seq, coid, event, status, ts, body, oid, broker, _, updated_at = logged
        events.append((seq, coid, event, ts, body))
        if last[coid] == i:  # its body is the event's just made (``ORDER_BODY_SQL``)
            latest.append((coid, oid, broker, status, updated_at, seq))
    return events, latest


def _round(
    conn: sqlite3.Connection,
    kept: list[LogRow | Record],
    last: dict[str, int],
    start: int,
    stop: int,
    first: dict[str, Any],
    fills: Sequence[FillRow | Fill],
    texts: BodyTexts,
) -> None:
    """One statement round of ``SqliteStore._fold``: the ``events`` and ``orders`` rows of
    ``kept[start:stop]`` (``_kept``), then the ``fills`` rows of ``fills[start:stop]``, the
    brokers' news encoded here (``texts``: each decimal's text made once an object, and an
    order's news and its fill carry the same ones: encoded one after the other). ``first``:
    each order's first sequence number among ``kept``, filled in as its rows come, across
    rounds. The rows go straight into each statement's parameter lists
    (``ManyRowInsert.run_columns``), in its columns' order, the columns a round's rows
    mostly share last."""
    events: list[Any] = []
    events_last: list[Any] = []
    orders: list[Any] = []
    orders_last: list[Any] = []
    added: list[Any] = []
    added_last: list[Any] = []
    records = min(stop, len(kept))
    executions = min(stop, len(fills))
    for i in range(start, max(records, executions)):
        if i < records:
            # Read as a tuple of anything: compiled, a typed row would be unboxed (each
            # item's type checked, its integers converted) only to be boxed again.
            logged: tuple[Any, ...] = kept[i]
            if len(logged) == _NEWS_ITEMS:  # the brokers' news, encoded here
                fields, body = texts.order(logged[3])
                seq = logged[0]
                coid = fields[ORDER_COID]
                events.append(seq)
                events.append(logged[2])
                events.append(body)
                events_last.append(logged[1])
                oid = fields[ORDER_ID]
                updated_at = fields[ORDER_UPDATED_AT]
                broker = fields[ORDER_BROKER]
                status = fields[ORDER_STATUS]
            else:
                seq, coid, event, status, ts, body, oid, broker, _, updated_at = logged
                events.append(seq)
                events.append(ts)
                events.append(body)
                events_last.append(event)
            final = last[coid] == i
            began = first.get(coid)
            if began is None:
                began = seq
                if not final:  # more of its rows follow (an order's one row: no entry)
                    first[coid] = seq
            if final:  # its body is the event's just made (``ORDER_BODY_SQL``)
                orders.append(coid)
                orders.append(oid)
                orders.append(updated_at)
                orders.append(seq)
                orders.append(began)
                orders_last.append(broker)
                orders_last.append(status)
        if i < executions:
            fill = fills[i]
            if isinstance(fill, tuple):  # the log's row
                # Read as a tuple of anything, as above.
                row: tuple[Any, ...] = fill
                added.append(row[2])
                added.append(row[4])
                added.append(row[5])
                added_last.append(row[3])
            else:  # handed over as news: encoded here
                fill_fields, fill_body = texts.fill(fill)
                added.append(fill_fields[FILL_COID])
                added.append(fill_fields[FILL_TS])
                added.append(fill_body)
                added_last.append(fill_fields[FILL_SYMBOL])
    if events_last:
        _APPEND.run_columns(conn, events, events_last)
        _UPSERT.run_columns(conn, orders, orders_last)
    if added_last:
        _ADD_FILL.run_columns(conn, added, added_last)


def _carries_news(order: Order, event: str) -> bool:
    """Whether ``order``'s record carries the brokers' news not folded yet in its own append:
    a record that names another order or was made for one already sent (a replacement's
    intent, a leg, a resend) must not be durable over an order whose earlier news a
    ``kill -9`` would take (restart settles the record from the journal's state of that
    order). A plain ``submit`` names none: the brokers' news then waits for its fold alone."""
    return event != "submit" or order.replaces is not None or order.leg is not None


def _order_and_event(row: _Row) -> tuple[str, str]:
    return row[3].client_order_id, row[1]


def _order_and_event_of(row: LogRow | Record) -> tuple[str, str]:
    """A ``LogRow``'s or a news ``Record``'s client order id and event."""
    # Read as a tuple of anything, as in ``_table_rows``: no unboxing of a typed row.
    items: tuple[Any, ...] = row
    if len(items) == _NEWS_ITEMS:
        return items[3].client_order_id, items[1]
    return items[1], items[2]


def _folded(rows: list[R], key: Callable[[R], tuple[str, str]]) -> list[R]:
    """``rows`` with each run of one order's ``update`` records cut to its last;
    ``key``: a row's client order id and event.

    The broker's answer and the stream's reports of one order (``accepted``
    then ``filled``) often land in one transaction: one row each in ``events``
    and ``orders`` instead of one per report. The history keeps every record
    made before an order left (``submit``, ``resend``) and each order's
    latest state per transaction.
    """
    out: list[R] = []
    last_update: dict[str, int] = {}  # client order id -> index in ``out`` of its update
    for row in rows:
        coid, event = key(row)
        if event != "update":
            last_update.pop(coid, None)
            out.append(row)
        elif coid in last_update:
            out[last_update[coid]] = row  # the later state wins, at the earlier's place
        else:
            last_update[coid] = len(out)
            out.append(row)
    return out


def _is_outage(exc: BaseException) -> bool:
    """Whether a failed write is the file's or the disk's doing (full, read-only, I/O)."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, sqlite3.DatabaseError) and str(
        getattr(exc, "sqlite_errorname", "")
    ).startswith(_OUTAGE_ERRORS)


def _outage_reason(exc: BaseException) -> str:
    """A short, stable description of an outage for health and STATUS."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    code = getattr(exc, "errno", None)
    if name == "SQLITE_FULL" or code in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    if name.startswith("SQLITE_READONLY") or code == errno.EROFS:
        return "read-only"
    if name.startswith("SQLITE_IOERR") or code == errno.EIO:
        return "I/O error"
    return f"{name or type(exc).__name__}: {exc}"


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _unopenable(path: Path, exc: sqlite3.DatabaseError) -> str:
    """What to tell the operator about a journal file SQLite cannot open."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return (
            f"journal {path} is corrupt ({exc}); move it aside and restore it from a"
            " backup (the brokers still know every order), then start again"
        )
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return (
            f"journal {path} cannot be written ({exc}); is the state directory"
            " read-only or owned by another user?"
        )
    return f"journal {path} cannot be opened: {exc}"


def open_sqlite_store(
    path: Path | str,
    *,
    synchronous: Literal["full", "normal"] = "normal",
    sync_interval_s: float = 0.05,
    group_commit: bool = True,
    max_batch: int = 4096,
    linger_s: float = 0.0,
    cache_size: int = 50_000,
    seen_filter_bits: int = 1 << 26,
    writer: Writer = "thread",
    now_ns: Callable[[], int] = time.time_ns,
    fsync: Callable[[int], None] = os.fdatasync,
    probe_interval_s: float = 5.0,
    max_pages: int | None = None,
    fold_interval_s: float = changelog.FOLD_INTERVAL_S,
    fsync_route: FsyncRoute | None = None,
    fsync_ahead: FsyncAhead | None = None,
    fsync_spin_ns: int = FSYNC_SPIN_NS,
    intake: IntakeGate | None = None,
    max_unfolded: int = changelog.MAX_UNFOLDED,
) -> AbstractAsyncContextManager[SqliteStore]:
    """Open (creating or migrating) the journal at ``path`` and run its writer."""
    return SqliteStore(
        Path(path),
        synchronous=synchronous,
        sync_interval_s=sync_interval_s,
        group_commit=group_commit,
        max_batch=max_batch,
        linger_s=linger_s,
        cache_size=cache_size,
        seen_filter_bits=seen_filter_bits,
        writer=writer,
        now_ns=now_ns,
        fsync=fsync,
        probe_interval_s=probe_interval_s,
        max_pages=max_pages,
        fold_interval_s=fold_interval_s,
        fsync_route=fsync_route,
        fsync_ahead=fsync_ahead,
        fsync_spin_ns=fsync_spin_ns,
        intake=intake,
        max_unfolded=max_unfolded,
    ).running()


def sqlite_store_opener(
    path: Path, *, synchronous: Literal["full", "normal"] = "normal", **options: Any
) -> Callable[[], Any]:
    """An opener for ``journal_actor``: each journal incarnation reopens the file."""

    def open_store() -> Any:
        return open_sqlite_store(path, synchronous=synchronous, **options)

    return open_store
