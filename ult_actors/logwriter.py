"""Log records handed over by the event loop, rendered and written by one thread.

The loop thread only appends a record (a dict, or a ``Line``: a hot line's parts,
made into the record on the writer's thread) to a bounded queue; a writer thread
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

Compiled by mypyc (``compiled.py``), as is the render (``logrender.py``): both run
holding the GIL, which the loop may be waiting for.

A writer made with ``threaded=False`` renders and writes in the caller's thread
(the console on a terminal, where a person reads along). After ``close`` every
writer works that way, so lines logged during interpreter shutdown still appear.
"""

from __future__ import annotations

import atexit
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextvars import Context, copy_context
from typing import Any, Final, TextIO

from ult_actors.logrender import Fields, Line, Lines, Record, record_of
from ult_actors.logstats import LogStats
from ult_actors.os_thread import name_os_thread

#: Turns one record into one line, newline included; runs on the writer thread.
Render = Callable[[Record], str]

#: Records waiting at most; beyond it they are dropped and counted.
DEFAULT_CAPACITY = 8192
#: How long the writer lets records gather before each write.
DEFAULT_LINGER_S = 0.02
#: Records one write takes at most, so a backlog reaches the stream in steady pieces.
_BATCH = 512


class LogWriter:
    """Renders and writes log records off the caller's thread, bounded and never blocking.

    ``render`` must not raise for a record it can be given; a record it fails on
    is written as a line naming the event and the error instead. A ``Lines`` as
    ``render`` writes JSON lines (``Lines.json``), a hot line (``Line``) of plain
    parts straight from them (``Lines.plain``).
    ``now`` gives the time stamped on the writer's own "dropped" lines; ``sleep`` waits
    out a window (``linger`` seconds) on the writer's thread.
    """

    def __init__(
        self,
        stream: TextIO,
        render: Render | Lines,
        *,
        now: Callable[[], float],
        capacity: int = DEFAULT_CAPACITY,
        linger: float = DEFAULT_LINGER_S,
        threaded: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stream = stream
        self._lines = render if isinstance(render, Lines) else None
        self.render: Render = render.json if isinstance(render, Lines) else render
        self.capacity = capacity
        self._now = now
        self._linger = linger
        self._sleep = sleep
        # A deque: an append is one C call that never blocks; the bound is checked
        # beside it (a second producer thread may overshoot it by one record).
        self._pending: deque[Record | Line] = deque()
        # Bound once: a call of it costs less than a method look-up on every record.
        self._append: Callable[[Record | Line], None] = self._pending.append
        # Rung by a record handed over while the writer waits on it (``_asleep``).
        self._bell: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._asleep = False
        self._stopping = False
        self._handed_over = 0
        self._written = 0
        self._dropped = 0
        self._dropped_reported = 0
        self._write_failed = 0
        # Numbers each batch rendered (``Lines.plain``), from 1.
        self._batches = 0
        self._in_caller = not threaded
        # Inline writes (console, after close) may come from several threads at once.
        self._write_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        if threaded:
            self._worker = threading.Thread(target=self._run, name="log-writer", daemon=True)
            self._worker.start()
            name_os_thread(self._worker)
            # A process that ends without calling close still writes what is queued.
            atexit.register(self.close)

    def hand_over(self, record: Record | Line) -> None:
        """Queue ``record`` for the writer thread, or drop and count it if the queue is full."""
        self._handed_over += 1
        if self._in_caller:
            self._write_batch([record])
        elif len(self._pending) >= self.capacity:
            self._dropped += 1
        else:
            self._append(record)
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
        thread = self._worker
        if thread is None:
            return True
        self._worker = None
        atexit.unregister(self.close)
        self._in_caller = True
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
            take = pending.popleft  # bound once a batch: no method look-up a record
            self._write_batch([take() for _ in range(batch)])

    def _write_batch(self, records: list[Any]) -> None:
        # One text of the whole batch: a plain line's parts go straight into it.
        self._batches += 1
        batch = self._batches
        plain = self._lines
        parts: list[str] = []
        for item in records:
            if plain is None or isinstance(item, dict) or not plain.plain_into(parts, item, batch):
                parts.append(self._render_one(item))
        count = len(records)
        dropped = self._dropped - self._dropped_reported
        if dropped:
            self._dropped_reported += dropped
            parts.append(self._render_one(_dropped_record(dropped, self._now())))
            count += 1
        if not count:
            return
        try:
            with self._write_lock:
                self.stream.write("".join(parts))
                self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken stream: nothing better to tell it to, so count the loss.
            self._write_failed += count
        else:
            self._written += count

    def _render_one(self, item: Record | Line) -> str:
        record = item if isinstance(item, dict) else record_of(item)
        try:
            return self.render(record)
        except Exception as exc:
            return self.render(_unrenderable_record(record, exc))


#: The caller's contextvars (O(1)); a module constant, so compiled code calls it without
#: a look-up in the module's dict.
_copy_context: Final[Callable[[], Context]] = copy_context


class InfoLines:
    """``emit(event, fields, source)`` hands ``writer`` an info line's parts (a ``Line``, one
    tuple) on the caller's thread: the bound ``context``, the time from ``clock`` and the
    caller's contextvars. Without a writer (``None``), or once ``chain`` no longer ends
    with ``tail`` (structlog's processors, swapped for others since),
    ``fallback(event, fields, source)`` logs the line instead."""

    def __init__(
        self,
        writer: LogWriter | None,
        context: dict[str, Any],
        clock: Callable[[], Any],  # Any: the time passed on as given (``Line``)
        chain: list[Any],
        tail: object,
        fallback: Callable[[str, Fields, Any], None],
    ) -> None:
        self._writer = writer
        self._context = context
        self._clock = clock
        self._chain = chain
        self._tail = tail
        self._fallback = fallback

    def emit(self, event: str, fields: Fields, source: Any = None) -> None:
        """Hand over the line ``log.info(event, **fields)`` writes; ``fields`` (a dict, or
        ``FixedFields`` read from ``source``: ``logrender.Fields``) and ``source`` are the
        writer's from now on."""
        writer = self._writer
        if writer is None or self._chain[-1] is not self._tail:
            self._fallback(event, fields, source)
            return
        writer.hand_over(
            (self._context, fields, source, event, "info", self._clock(), _copy_context())
        )


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
