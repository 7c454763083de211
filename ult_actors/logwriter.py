"""Log records handed over by the event loop, rendered and written by one thread.

The loop thread only appends a record (a dict, or a ``Line``: a hot line's parts,
made into the record here) to a bounded queue; a writer thread
takes whatever has piled up, renders each record to a line, writes them with
one ``write`` and flushes. When the queue is full the record is dropped and
counted rather than waiting for room: a slow or stuck log stream must never
stall orders. The next batch written then carries a warning line saying how
many lines were lost.

The writer's thread runs Python, so each time it wakes it takes the GIL from the
loop: while lines keep coming it wakes once per linger window (a sleep; a record
handed over meanwhile wakes nothing), and only after a window found nothing does
it wait on a bell, which the next record rings. A window's write takes what had
piled up when the window ended; what the loop hands over while that write runs
(the write hands the GIL back) waits for the next window, rather than costing a
write, and a taking back of the GIL, each. So a line reaches the stream at most
a window and one write's time after it was handed over.

A writer made with ``threaded=False`` renders and writes in the caller's thread
(the console on a terminal, where a person reads along). After ``close`` every
writer works that way, so lines logged during interpreter shutdown still appear.
"""

from __future__ import annotations

import atexit
import contextvars
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

import msgspec
from structlog.contextvars import STRUCTLOG_KEY_PREFIX

from ult_actors.os_thread import name_os_thread

#: One log record: the event dict as the loop's processors left it.
Record = dict[str, Any]
#: A hot line's parts, as handed over without structlog's layers: the bound logger's
#: context, the call's fields, event, level, time (epoch seconds) and the caller's
#: contextvars (the copy is O(1); they are looked through on the writer thread).
Line = tuple[dict[str, Any], dict[str, Any], str, str, float, contextvars.Context]
#: Turns one record into one line, newline included; runs on the writer thread.
Render = Callable[[Record], str]

#: Records waiting at most; beyond it they are dropped and counted.
DEFAULT_CAPACITY = 8192
#: How long the writer lets records gather before each write.
DEFAULT_LINGER_S = 0.02
#: Records one write takes at most, so a backlog reaches the stream in steady pieces.
_BATCH = 512


class LogStats(msgspec.Struct, frozen=True, kw_only=True):
    """What a ``LogWriter`` has done so far."""

    #: Records handed over (written inline included).
    handed_over: int
    #: Lines written to the stream.
    written: int
    #: Records dropped because the queue was full.
    dropped: int
    #: Lines lost because the stream refused them (closed, broken pipe).
    write_failed: int
    #: Records waiting for the writer thread.
    pending: int


class LogWriter:
    """Renders and writes log records off the caller's thread, bounded and never blocking.

    ``render`` must not raise for a record it can be given; a record it fails on
    is written as a line naming the event and the error instead.
    ``now`` gives the time stamped on the writer's own "dropped" lines; ``sleep`` waits
    out a window (``linger`` seconds) on the writer's thread.
    """

    def __init__(
        self,
        stream: TextIO,
        render: Render,
        *,
        now: Callable[[], float],
        capacity: int = DEFAULT_CAPACITY,
        linger: float = DEFAULT_LINGER_S,
        threaded: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stream = stream
        self.render = render
        self.capacity = capacity
        self._now = now
        self._linger = linger
        self._sleep = sleep
        # A deque: an append is one C call that never blocks; the bound is checked
        # beside it (a second producer thread may overshoot it by one record).
        self._pending: deque[Record | Line] = deque()
        # Rung by a record handed over while the writer waits on it (``_asleep``).
        self._bell: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._asleep = False
        self._stopping = False
        self._handed_over = 0
        self._written = 0
        self._dropped = 0
        self._dropped_reported = 0
        self._write_failed = 0
        self._inline = not threaded
        # Inline writes (console, after close) may come from several threads at once.
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
            self._thread.start()
            name_os_thread(self._thread)
            # A process that ends without calling close still writes what is queued.
            atexit.register(self.close)

    def hand_over(self, record: Record | Line) -> None:
        """Queue ``record`` for the writer thread, or drop and count it if the queue is full."""
        self._handed_over += 1
        if self._inline:
            self._write_batch([record])
        elif len(self._pending) >= self.capacity:
            self._dropped += 1
        else:
            self._pending.append(record)
            if self._asleep:
                self._asleep = False
                self._bell.put(None)

    def stats(self) -> LogStats:
        """Counts so far; cheap, safe from any thread."""
        return LogStats(
            handed_over=self._handed_over,
            written=self._written,
            dropped=self._dropped,
            write_failed=self._write_failed,
            pending=len(self._pending),
        )

    def close(self, timeout: float = 2.0) -> bool:
        """Write what is queued, waiting at most ``timeout`` s; later records are written inline.

        True if everything queued was written in time.
        """
        thread = self._thread
        if thread is None:
            return True
        self._thread = None
        atexit.unregister(self.close)
        self._inline = True
        self._stopping = True
        self._bell.put(None)
        thread.join(timeout)
        if thread.is_alive():
            return False
        # A record handed over by another thread just as the writer finished.
        self._write_pending()
        return True

    def _run(self) -> None:
        pending = self._pending
        while True:
            # Let records gather: one wake-up (one GIL take from the loop) per window.
            self._sleep(self._linger)
            if pending:
                self._write_pending(len(pending))
                continue
            if self._stopping:
                return
            # A window found nothing: wait for the bell. Said before the last look, so a
            # record appended after that look rings it (a ring too many only wakes us).
            self._asleep = True
            if not pending and not self._stopping:
                self._bell.get()
            self._asleep = False

    def _write_pending(self, count: int | None = None) -> None:
        """Write the first ``count`` records waiting, or until none is left (None), in writes
        of at most ``_BATCH``."""
        pending = self._pending
        left = sys.maxsize if count is None else count
        while left > 0 and pending:
            batch = min(left, len(pending), _BATCH)
            left -= batch
            self._write_batch([pending.popleft() for _ in range(batch)])

    def _write_batch(self, records: list[Any]) -> None:
        lines = [self._render_one(r) for r in records]
        dropped = self._dropped - self._dropped_reported
        if dropped:
            self._dropped_reported += dropped
            lines.append(self._render_one(_dropped_record(dropped, self._now())))
        if not lines:
            return
        try:
            with self._write_lock:
                self.stream.write("".join(lines))
                self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken stream: nothing better to tell it to, so count the loss.
            self._write_failed += len(lines)
        else:
            self._written += len(lines)

    def _render_one(self, item: Record | Line) -> str:
        record = item if isinstance(item, dict) else record_of(item)
        try:
            return self.render(record)
        except Exception as exc:
            return self.render(_unrenderable_record(record, exc))


def record_of(line: Line) -> Record:
    """The record structlog's chain makes of the same call, keys in the same order:
    context, fields, event, contextvars not already there, level, time."""
    context, fields, event, level, stamp, variables = line
    record = {**context, **fields}
    record["event"] = event
    for var in variables:
        if var.name.startswith(STRUCTLOG_KEY_PREFIX) and variables[var] is not Ellipsis:
            record.setdefault(var.name[len(STRUCTLOG_KEY_PREFIX) :], variables[var])
    record["level"] = level
    record["timestamp"] = stamp
    return record


def _dropped_record(count: int, now: float) -> Record:
    return {
        "event": f"{count} log lines dropped",
        "dropped": count,
        "level": "warning",
        "timestamp": now,
    }


def _unrenderable_record(record: Record, exc: Exception) -> Record:
    """What is safe to write of a record the renderer failed on: its name, level and time."""
    event = record.get("event")
    return {
        "event": event if isinstance(event, str) else type(event).__name__,
        "level": record.get("level", "error"),
        "timestamp": record.get("timestamp"),
        "log_error": f"cannot render this record: {type(exc).__name__}: {exc}",
    }
