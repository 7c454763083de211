"""The journal's change log: a batch of records made durable by one append, folded later.

``SqliteStore`` makes a batch of records durable by appending it, as one
msgpack record, to a ``segment_log`` next to the journal file
(``journal.db.log.<n>``): one copy into the segment's mapping, no SQLite on
the order's path. The
``JournalLog``'s thread folds what was appended into the SQLite file at
most ``interval_s`` later, every batch of that time in one transaction
(the store's ``fold``), and deletes a closed segment once the file holds
all of it. A store opening the file replays every segment left over
(``read``) and deletes them: the fold is idempotent (events keyed by
sequence number, an order's row replaced only by a newer one, a fill kept
once), so a crash anywhere between the append and the delete leaves the
file right once replayed.

An append that fails leaves nothing of its record behind that a replay
would take in: the segment is cut back to where it was, or, if even that
fails, closed, and the next append opens another (the reader stops at a
record cut short and goes on with the next segment).

The brokers' news (records and fills nobody waits for) skips the log:
``news`` hands it, unencoded, to the fold's thread, which
encodes it and writes it with its next fold. A ``kill -9`` before that fold
loses it (news is promised to nobody: reconciliation asks the broker), and
a fold's rows are taken by sequence number, not in the order they came
(a submit still waiting for its append reaches the fold after its answer).
What a ``kill -9`` may take is only news no later record depends on: the
store appends, with a record that names another order or was made for one
already sent (a replacement's intent, a list's leg, a resend), the news
handed over and not folded yet (``take_unfolded_news``), so such a record
is never durable over an order whose earlier news the file lacks.
"""

from __future__ import annotations

import contextlib
import operator
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec
import trio

from ult_actors import segment_log
from ult_actors.journal.bodies import decode_order
from ult_actors.journal.log_record import FillRow as FillRow
from ult_actors.journal.log_record import LogRecord as LogRecord
from ult_actors.journal.log_record import LogRow as LogRow
from ult_actors.messages import Fill, Order
from ult_actors.os_thread import name_os_thread
from ult_actors.runtime.intake import IntakeGate

#: Most time between a batch being appended and its fold into the file.
FOLD_INTERVAL_S = 0.02
#: Appends and news not yet folded above which the log closes its intake gate (reopened a
#: tenth lower, ``reopen_at``): ~7,000 orders of a pipelining client, a few tens of MB
#: (``runtime/intake.py``).
MAX_UNFOLDED = 20_000
#: Jobs one fold takes at most: behind, the fold says how far it got every so many (and
#: a closed intake opens as soon as that is far enough), not once it has caught up.
MAX_FOLD_JOBS = 2_000

#: One record as the store makes it: sequence number, event, time, the order's state.
Record = tuple[int, str, int, Order]
#: Writes rows to the file in one transaction; ``probe``: with room to grow checked. The
#: brokers' news comes as it was handed over (a ``Record``, a ``Fill``): the fold encodes it.
Fold = Callable[[list[LogRow | Record], list[FillRow | Fill], bool], None]

_encoder = msgspec.msgpack.Encoder()
_encode: Final = _encoder.encode
_encode_into: Final = _encoder.encode_into
#: A body is its Struct's fields as an array, not a map (``journal.bodies``).
_fields_of: Final = msgspec.structs.astuple
#: A body is encoded into this much room and cut to its length (an order's is ~110-200
#: bytes): an empty ``bytearray`` grows step by step, ~1,200 instructions more a body.
_BODY_ROOM: Final = 512
#: That room, copied for each body: compiled, ``bytearray(_BODY_ROOM)`` goes through the
#: type's call and zeroes it (~720 instructions), a copy is ~520. Never written to itself.
_ROOM: Final = bytearray(_BODY_ROOM)


_decode = msgspec.msgpack.Decoder(LogRecord).decode

#: A log record holds either a ``LogRecord`` (a msgpack array of two: a batch's rows and
#: fills) or, since the lone form, one record alone: a msgpack array of four, its sequence
#: number, its time, its event and the order's body itself (the array of its fields,
#: ``journal.bodies``). The lone form is the record's head then the body's bytes as
#: encoded for the file, so an order's record is encoded once: its ``LogRow`` takes the
#: same body, and its other columns are fields of the order. Told apart by the first byte.
_LONE: Final = 0x94  # a msgpack array of four
_decode_lone: Final = msgspec.msgpack.Decoder(tuple[int, int, str, msgspec.Raw]).decode

#: Where a ``LogRow``'s columns are in an ``Order``'s ``astuple`` (``Order`` keeps its
#: fields' order: a body is that array, ``journal.bodies``).
_FIELDS: Final = Order.__struct_fields__
#: An order's columns in its fields (``BodyTexts.order``'s list; ``journal.sqlite``'s fold).
ORDER_ID: Final = _FIELDS.index("id")
ORDER_COID: Final = _FIELDS.index("client_order_id")
ORDER_BROKER: Final = _FIELDS.index("broker")
ORDER_STATUS: Final = _FIELDS.index("status")
ORDER_UPDATED_AT: Final = _FIELDS.index("updated_at")
_OUTCOME: Final = _FIELDS.index("outcome")


def log_row(seq: int, event: str, ts: int, order: Order) -> LogRow:
    """One record as the log holds it; its body is the order's fields as a msgpack array
    (``journal.bodies``)."""
    fields = _fields_of(order)
    body = _ROOM.copy()
    _encode_into(fields, body)  # cheaper than ``encode`` to bytes, and bound
    return _logged(seq, event, ts, fields, body)


def _logged(seq: int, event: str, ts: int, fields: tuple[Any, ...], body: bytearray) -> LogRow:
    # The order's columns read from its fields by position: compiled, an attribute read
    # of a Struct is a look-up (~110 instructions), an item of a tuple a load.
    return (
        seq, fields[ORDER_COID], event, fields[ORDER_STATUS], ts, body, fields[ORDER_ID],
        fields[ORDER_BROKER], fields[_OUTCOME], fields[ORDER_UPDATED_AT],
    )  # fmt: skip


def fill_row(fill: Fill) -> FillRow:
    """One fill as the log holds it; its body is the fill's fields as a msgpack array."""
    return (fill.broker, fill.fill_id, fill.client_order_id, fill.symbol, fill.ts, fill_body(fill))


def fill_body(fill: Fill) -> bytearray:
    """A fill's body: its fields as a msgpack array (``journal.bodies``)."""
    body = _ROOM.copy()
    _encode_into(_fields_of(fill), body)
    return body


#: Where a fill's row's columns are in a ``Fill``'s ``astuple`` (its body's order).
_FILL_FIELDS: Final = Fill.__struct_fields__
#: A fill's columns in its fields (``BodyTexts.fill``'s list; ``journal.sqlite``'s fold).
FILL_COID: Final = _FILL_FIELDS.index("client_order_id")
FILL_SYMBOL: Final = _FILL_FIELDS.index("symbol")
FILL_TS: Final = _FILL_FIELDS.index("ts")
#: ``Decimal``, a C static compiled (``LastText.of``'s test of a value's type).
_DECIMAL: Final = Decimal


#: Where an ``Order``'s and a ``Fill``'s decimals are in their bodies (``astuple``'s order).
_QTY: Final = _FIELDS.index("qty")
_LIMIT: Final = _FIELDS.index("limit_price")
_STOP: Final = _FIELDS.index("stop_price")
_FILLED: Final = _FIELDS.index("filled_qty")
_AVG: Final = _FIELDS.index("avg_fill_price")
_ARRIVAL: Final = _FIELDS.index("arrival_price")
_FILL_QTY: Final = _FILL_FIELDS.index("qty")
_FILL_PRICE: Final = _FILL_FIELDS.index("price")
_FILL_COMMISSION: Final = _FILL_FIELDS.index("commission")


class LastText:
    """One kind of decimal's last object and its text: the object is held, so an
    identical object is the same value (a ``Decimal`` never changes) and its text the
    same bytes msgspec writes for it."""

    def __init__(self) -> None:
        self.value: object = None
        self.text = ""

    # Typed ``object``, not ``Decimal``: compiled, a ``Decimal`` argument is type-checked.
    def of(self, value: object) -> object:
        """What msgspec is given for ``value``: its text, made only when it is not the last
        object; anything but a ``Decimal`` as it is (msgspec writes an ``int`` as one)."""
        if value is self.value:
            return self.text
        if type(value) is not _DECIMAL:
            return value
        self.value = value
        self.text = str(value)
        return self.text


class BodyTexts:
    """The fold's encodes of the brokers' news, each decimal written as its text, made once
    an object: the bodies are the bytes ``log_row`` and ``fill_body`` write.

    msgspec writes a ``Decimal`` as its ``str`` (~450 instructions each), and one order's
    news carries the same objects several times: a market order filled whole has its
    quantity as its ``qty``, its ``filled_qty`` and its fill's ``qty``, and the fill's
    price (the venue's until the next tick) as its ``avg_fill_price`` and the fill's
    ``price``, order after order; its arrival price is the symbol's, held until it moves.
    Each kind of decimal keeps its last object and its text (``LastText``: the paper
    venue's record does the same, ``brokers.paper.batch.DecimalTexts``). One thread's:
    the fold's (or the replay's before it starts).
    """

    def __init__(self) -> None:
        self.qty = LastText()
        #: A filled quantity other than the whole quantity (nothing filled: every such
        #: order's is one ``Decimal(0)``, the field's default).
        self.filled = LastText()
        self.price = LastText()
        self.arrival = LastText()
        #: A limit or stop price.
        self.terms = LastText()
        self.commission = LastText()

    def order(self, order: Order) -> tuple[list[Any], bytearray]:
        """``order``'s fields (``astuple``'s, its decimals made text) and its body."""
        fields = list(_fields_of(order))
        qty = self.qty
        value = fields[_QTY]
        fields[_QTY] = qty.of(value)
        value = fields[_FILLED]
        fields[_FILLED] = qty.text if value is qty.value else self.filled.of(value)
        value = fields[_AVG]
        if value is not None:
            fields[_AVG] = self.price.of(value)
        value = fields[_ARRIVAL]
        if value is not None:
            fields[_ARRIVAL] = self.arrival.of(value)
        value = fields[_LIMIT]
        if value is not None:
            fields[_LIMIT] = self.terms.of(value)
        value = fields[_STOP]
        if value is not None:
            fields[_STOP] = self.terms.of(value)
        body = _ROOM.copy()
        _encode_into(fields, body)
        return fields, body

    def fill(self, fill: Fill) -> tuple[list[Any], bytearray]:
        """``fill``'s fields (``astuple``'s, its quantity, price and commission made text)
        and its body."""
        fields = list(_fields_of(fill))
        fields[_FILL_QTY] = self.qty.of(fields[_FILL_QTY])
        fields[_FILL_PRICE] = self.price.of(fields[_FILL_PRICE])
        fields[_FILL_COMMISSION] = self.commission.of(fields[_FILL_COMMISSION])
        body = _ROOM.copy()
        _encode_into(fields, body)
        return fields, body


#: A ``LogRow``'s sequence number: a fold's rows are written in its order.
seq_of = operator.itemgetter(0)


def read(path: Path) -> Iterator[LogRecord]:
    """Every record the log of ``path`` holds, oldest first (a segment's record cut short
    ends that segment; one that cannot be decoded, the replay)."""
    for payload in segment_log.read(path):
        try:
            yield decode_record(payload)
        except msgspec.DecodeError:
            return


def decode_record(payload: bytes) -> LogRecord:
    """One record of the log, in either form (a batch's ``LogRecord`` or a lone record)."""
    if not payload or payload[0] != _LONE:
        return _decode(payload)
    seq, ts, event, raw = _decode_lone(payload)
    body = bytearray(raw)
    return LogRecord([_logged(seq, event, ts, _fields_of(decode_order(body)), body)], [])


#: One append as the fold's thread takes it: its rows, its fills, the memo handed back
#: to ``on_folded`` once folded (the store's own records), and its number. A plain
#: tuple: one is made per append, on the trio thread.
_Appended = tuple[list[LogRow], list[FillRow], Any, int]
#: An append's rows or fills when it has none: one list for all of them, never written to
#: (the fold's thread only adds them to its own), not a new one made per append.
_NO_ROWS: Final[list[LogRow]] = []
_NO_FILLS: Final[list[FillRow]] = []
#: One piece of news as the fold's thread takes it: a ``Record`` or a ``Fill``, and its
#: number among the news.
_News = tuple[Record | Fill, int]
#: A ``_News`` job's length (an ``_Appended``'s is four).
_NEWS_JOB: Final = 2


@dataclass
class _Retry:
    """A probe: fold now, with room to grow checked, and say how it went."""

    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


_Job = _Appended | _News | _Retry | Path | None  # a closed segment to delete; None: stop
#: (appends, news) folded through, and who waits for that.
_Waiters = list[tuple[int, int, trio.Event]]


class JournalLog:
    """The journal's log: one append per batch, folded into the file on a thread.

    One writer appends at a time (the store's writer, on the trio thread or
    its own); the news comes from the trio thread. ``on_folded(memos)``
    (the news's ``Record``s among them, as one list) and ``on_failed(error)``
    run on the trio thread. After a failed fold the thread folds nothing until ``retry``
    (the store's probe) succeeds; the log keeps every record meanwhile.
    """

    def __init__(
        self,
        path: Path,
        fold: Fold,
        *,
        on_folded: Callable[[list[Any]], None],
        on_failed: Callable[[BaseException], None],
        interval_s: float = FOLD_INTERVAL_S,
        segment_bytes: int = segment_log.SEGMENT_BYTES,
        intake: IntakeGate | None = None,
        max_unfolded: int = MAX_UNFOLDED,
    ) -> None:
        """Open a new segment (``OSError`` if it cannot be) and start the fold's thread.
        ``intake``: closed while more than ``max_unfolded`` appends and news are not
        folded yet, opened again at ``reopen_at`` (on the trio thread, as news comes and
        folds end)."""
        self._log = segment_log.SegmentLog(path)
        self._intake = intake
        self.max_unfolded = max_unfolded
        #: Unfolded at or below this, a closed intake opens again: a narrow band (a tenth)
        #: keeps each pause short, not one long stall while the fold catches up.
        self.reopen_at = max_unfolded - max_unfolded // 10
        self._fold = fold
        self._on_folded = on_folded
        self._on_failed = on_failed
        self.interval_s = interval_s
        self.segment_bytes = segment_bytes
        #: Appends made, and how many of them the file holds (as the trio side knows).
        self.appends = 0
        self.folded_appends = 0
        #: News handed over (on the trio thread), and how much of it the file holds.
        #: Counted apart from the appends, which ``full`` makes on the writer's thread.
        self.news_handed = 0
        self.folded_news = 0
        #: The news handed over that may not be in the file yet, oldest first: the last is
        #: number ``news_handed``. A list cut once a fold (``_forget_folded``), not a
        #: piece at a time.
        self._unfolded: list[Record | Fill] = []
        #: Transactions that folded appends into the file.
        self.folds = 0
        #: Why the last fold failed, until one succeeds (set by the fold's thread).
        self.failure: BaseException | None = None
        self._cut = False  # the open segment may end in a record cut short
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        #: Where a lone record's head is encoded (kept: it is as long each time, as a rule).
        self._head = bytearray()
        #: Where a record nothing keeps after its append is encoded (``append_one`` not
        #: ``fold``): a new room per record (a copy, then freed) costs ~650 instructions more.
        self._record = bytearray(_BODY_ROOM)
        self._hurry = threading.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._waiters: _Waiters = []
        # Not ``_thread``: compiled (mypyc), that attribute is a C field named ``__thread``.
        self._fold_thread = threading.Thread(
            target=self._work, name=f"journal-fold:{path.name}", daemon=True
        )
        self._fold_thread.start()
        name_os_thread(self._fold_thread)

    @property
    def segment(self) -> Path:
        """The segment the next append goes to (unless it rotates first)."""
        return self._log.segment

    def append(
        self,
        rows: list[LogRow],
        fills: list[FillRow],
        memo: Any,
        *,
        sync: Callable[[int], None] | None = None,
    ) -> Path:
        """Write one record (and ``sync`` the segment after, if given), then hand it to the
        fold; the segment written. ``OSError`` if either fails: then nothing of it is
        left for a replay, and the fold never sees it."""
        # A ``LogRecord`` is array-like: the tuple encodes as one, without making one.
        self._append(_encode((rows, fills)), sync)
        self.appends += 1
        self._jobs.put((rows, fills, memo, self.appends))
        return self._log.segment

    def append_one(
        self,
        seq: int,
        event: str,
        ts: int,
        order: Order,
        memo: Any,
        *,
        sync: Callable[[int], None] | None = None,
        fold: bool = True,
    ) -> Path:
        """``append`` of one record without fills, in the lone form: the order's body is
        encoded once, and the record is its head and that body (``_LONE``). Not ``fold``:
        the fold writes nothing of it (the store hands the record's row to the fold as news
        itself, in a later state: ``SqliteStore.record_answer``); a replay still does. Its
        job goes to the fold's thread all the same, with no rows: the appends are counted
        (and a segment deleted) in order."""
        fields = _fields_of(order)
        if not fold:
            # Nothing of it goes to the fold, so its body is not wanted apart: the record
            # is one encode, the body's array nested in it (the same bytes as the head then
            # the body below, without the head's encode, its patch and the concatenation),
            # into a kept buffer: the append copies it, and nothing keeps it after.
            record = self._record
            _encode_into((seq, ts, event, fields), record)
            self._append(record, sync)
            self.appends += 1
            self._jobs.put((_NO_ROWS, _NO_FILLS, memo, self.appends))
            return self._log.segment
        body = _ROOM.copy()
        _encode_into(fields, body)
        # The head, an array of three as encoded, made an array of four: the body follows.
        head = self._head
        _encode_into((seq, ts, event), head)
        head[0] = _LONE
        self._append(head + body, sync)
        self.appends += 1
        self._jobs.put(([_logged(seq, event, ts, fields, body)], _NO_FILLS, memo, self.appends))
        return self._log.segment

    def _append(self, payload: bytes | bytearray, sync: Callable[[int], None] | None) -> None:
        if self._cut or self._log.size >= self.segment_bytes:
            self._jobs.put(self._log.rotate())
            self._cut = False
        before = self._log.size
        try:
            self._log.append_payload(payload)
            if sync is not None:
                sync(self._log.fd)  # the segment's name was fsynced when it was made
        except OSError:
            self._cut_back(before)
            raise

    def news(self, item: Record | Fill) -> None:
        """Hand one record or fill nobody waits for to the fold's thread, which encodes it
        and writes it with its next fold (it is not appended to the log)."""
        self.news_handed += 1
        self._unfolded.append(item)
        self._jobs.put((item, self.news_handed))
        # Not while the fold fails: that is the store's to report (unavailable), not a wait.
        intake = self._intake
        if intake is not None and self.unfolded() > self.max_unfolded and self.failure is None:
            intake.close()

    def unfolded(self) -> int:
        """Appends and news not in the file yet (as the trio side knows)."""
        return self.appends - self.folded_appends + self.news_handed - self.folded_news

    def take_unfolded_news(self) -> list[Record | Fill]:
        """The news handed over and not folded yet, oldest first, each piece once: a record
        appended with it is durable only with the news made before it."""
        self._forget_folded()
        taken, self._unfolded = self._unfolded, []
        return taken

    def _forget_folded(self) -> None:
        # The pieces numbered up to ``folded_news`` are in the file; the list's first is
        # number ``news_handed - len + 1`` (the ones taken before it are gone already).
        folded = self.folded_news - (self.news_handed - len(self._unfolded))
        if folded > 0:
            del self._unfolded[:folded]

    def _cut_back(self, size: int) -> None:
        try:
            self._log.cut_back(size)  # the next append writes where this one began
        except OSError:
            self._cut = True  # the reader stops at the cut; the next append rotates

    def retry(self) -> None:
        """Fold what is pending now, with room to grow checked (a probe after a failure);
        raises what the fold raised. Blocks: call it off the trio thread."""
        job = _Retry()
        self._jobs.put(job)
        self._hurry.set()
        job.done.wait()
        if job.error is not None:
            raise job.error

    async def folded_through(self, appends: int, news: int = 0) -> None:
        """Return once the first ``appends`` appends and ``news`` pieces of news are in the
        file, or a fold fails."""
        if self._reached(appends, news) or self.failure is not None:
            return
        done = trio.Event()
        self._waiters.append((appends, news, done))
        self._hurry.set()
        await done.wait()

    async def in_file(self) -> None:
        """Return once everything appended or handed over before the call is in the file,
        or a fold fails."""
        await self.folded_through(self.appends, self.news_handed)

    def _reached(self, appends: int, news: int) -> bool:
        return self.folded_appends >= appends and self.folded_news >= news

    def close(self) -> None:
        """Fold what is left, stop the thread and close the segment; delete the log if the
        file holds all of it (after a failed fold it stays, for the next open). Blocks."""
        self._jobs.put(None)
        self._hurry.set()
        self._fold_thread.join()
        self._log.close()
        if self.failure is None:
            segment_log.remove(self._log.path)

    # -- the trio side -----------------------------------------------------------------

    def _folded(self, memos: list[Any], appends: int, news: int) -> None:
        self.folded_appends = appends
        self.folded_news = news
        intake = self._intake
        if intake is not None and intake.closed and self.unfolded() <= self.reopen_at:
            intake.open()
        self._forget_folded()
        self.folds += 1
        self._wake()
        self._on_folded(memos)

    def _failed(self, error: BaseException) -> None:
        if self._intake is not None:
            self._intake.open()
        self._wake()
        self._on_failed(error)

    def _wake(self) -> None:
        failed = self.failure is not None
        waiting: _Waiters = []
        for appends, news, done in self._waiters:
            if failed or self._reached(appends, news):
                done.set()
            else:
                waiting.append((appends, news, done))
        self._waiters = waiting

    def _tell(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # nobody is listening any more
            self._token.run_sync_soon(fn, *args)

    # -- the fold's thread -------------------------------------------------------------

    def _work(self) -> None:
        rows: list[LogRow | Record] = []
        fills: list[FillRow | Fill] = []
        memos: list[Any] = []
        news: list[Record] = []  # one memo for all of a fold's news
        closed: list[Path] = []
        appended = handed = told = 0
        jobs_queue = self._jobs
        take = jobs_queue.get_nowait  # bound once: not looked up per job
        behind = False  # the last fold left jobs waiting: no time to wait for more
        while True:
            first = jobs_queue.get()
            jobs = [first]
            if first is not None and not isinstance(first, _Retry) and not behind:
                # Let the appends of the next few ms join this transaction.
                self._hurry.wait(self.interval_s)
            self._hurry.clear()
            behind = False
            while True:
                if len(jobs) >= MAX_FOLD_JOBS:
                    behind = True
                    break
                try:
                    jobs.append(take())
                except queue.Empty:
                    break
            retries: list[_Retry] = []
            stopping = False
            # Told apart by C checks of a tuple and its length, most common first: an
            # ``isinstance`` against ``Fill`` (a msgspec class) that fails is a call through
            # its metaclass (~500 instructions), and two jobs of three are news.
            for job in jobs:
                if isinstance(job, tuple):
                    # Read as a tuple of anything: compiled, a typed job would be unboxed.
                    parts: tuple[Any, ...] = job
                    if len(parts) == _NEWS_JOB:
                        item = parts[0]
                        handed = parts[1]
                        # Encoded by the fold, a few at a time between its statements.
                        if isinstance(item, tuple):  # a ``Record``
                            news.append(item)
                            rows.append(item)
                        else:
                            fills.append(item)
                    else:
                        logged: list[LogRow] = parts[0]
                        if logged:  # not an answered record's (``_NO_ROWS``)
                            rows += logged
                        logged_fills: list[FillRow] = parts[1]
                        if logged_fills:
                            fills += logged_fills
                        memos.append(parts[2])
                        appended = parts[3]
                elif job is None:
                    stopping = True
                elif isinstance(job, Path):
                    closed.append(job)
                else:
                    retries.append(job)
            error = None
            if self.failure is None or retries:
                error = self._fold_now(rows, fills, closed, probe=bool(retries))
                if error is None:
                    recovered, self.failure = self.failure is not None, None
                    if news:
                        memos.append(news)
                    if memos or recovered or handed != told:
                        self._tell(self._folded, memos, appended, handed)
                        told = handed
                    rows, fills, memos, news, closed = [], [], [], [], []
                else:
                    self.failure = error
                    self._tell(self._failed, error)
            for job in retries:
                job.error = error
                job.done.set()
            if stopping:
                return

    def _fold_now(
        self,
        rows: list[LogRow | Record],
        fills: list[FillRow | Fill],
        closed: list[Path],
        *,
        probe: bool,
    ) -> BaseException | None:
        try:
            if rows or fills or probe:
                self._fold(rows, fills, probe)
            for segment in closed:
                segment.unlink(missing_ok=True)
        except Exception as exc:  # handed to the trio side
            return exc
        return None
