"""The journal log's fsync, batched off the order path (for ``synchronous = "normal"``).

With ``normal`` a record is durable against a ``kill -9`` once its append
to the change log has returned (it is in the operating system's page
cache); a machine crash may lose it until the segment is fsynced.
``LogSyncer`` covers that: once something has been appended, it waits
``interval_s`` and fdatasyncs every segment appended to since, on its own
thread, so a machine crash loses at most the appends of the last interval
(plus one fsync's time) and no order ever waits for an fsync. Idle, it
sleeps: nothing appended, no fsync, no wake-up. A segment gone by then was
folded into the file (durably) and deleted: nothing of it to lose. A
segment's size and name were fsynced when it was made (``segment_log``),
so an fdatasync of its pages is all a record needs.

The thread keeps a segment open from one round to the next while it is
appended to: every call that blocks hands the GIL back, and taking it
again while the trio thread runs orders costs a wait of its own (and the
trio thread a wake-up of this one at each of its system calls until it
gets it: ``docs/performance.md``, "wake-ups per sequential order"); an
open and a close a round were two of the round's four.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from ult_actors.os_thread import name_os_thread


class LogSyncer:
    """Fdatasyncs the segments appended to, ``interval_s`` after an append, on its own thread.

    The journal calls ``appended(segment)`` after each append (from any
    thread); ``close()`` stops the thread after a last fsync of what is left.
    """

    def __init__(
        self,
        interval_s: float,
        *,
        fsync: Callable[[int], None] = os.fdatasync,
        name: str = "log-sync",
    ) -> None:
        self.interval_s = interval_s
        self._fsync = fsync
        self._changed = threading.Condition()
        self._dirty: set[Path] = set()  # appended to since their last fsync
        # Dirty sets taken by a round so far, and the segment last added to the one of
        # ``_marked_in`` (``appended``'s check without hashing a ``Path``, a Python call).
        self._taken = 0
        self._marked: Path | None = None
        self._marked_in = -1
        # The segments of the last round, kept open for the next (``sync_once`` only).
        self._open: dict[Path, int] = {}
        self._closing = False
        #: Rounds of fsyncs done; why the last one failed, until one succeeds (the
        #: journal refuses new orders meanwhile: what it appended may not reach the disk).
        self.syncs = 0
        self.last_error: str | None = None
        self._sync_thread = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._sync_thread.start()
        name_os_thread(self._sync_thread)

    def appended(self, segment: Path) -> None:
        """Something was appended to ``segment``: fsync it within ``interval_s``."""
        # Already due (read without the lock, so that an append costs no lock but the first
        # of a round's): the set it was added to is taken, and fsynced, after this read.
        if segment is self._marked and self._marked_in == self._taken:
            return
        with self._changed:
            if not self._dirty:
                self._changed.notify()
            self._dirty.add(segment)
            self._marked, self._marked_in = segment, self._taken

    def sync_once(self) -> bool:
        """Fsync every segment appended to since its last fsync; whether there were any
        and all of them worked."""
        with self._changed:
            if not self._dirty:
                return False
            # Taken before the fsyncs: an append that lands during them is fsynced next time.
            dirty, self._dirty = self._dirty, set()
            self._taken += 1
        failed: list[Path] = []
        for segment in sorted(dirty):
            fd = self._open.get(segment)
            if fd is None:
                try:
                    fd = self._open[segment] = os.open(segment, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # folded into the file and deleted: nothing of it to lose
                except OSError as exc:
                    self.last_error = f"fsync of {segment} failed: {exc.strerror or exc}"
                    failed.append(segment)
                    continue
            try:
                self._fsync(fd)  # flushes the file's pages, whichever descriptor wrote them
            except OSError as exc:
                self.last_error = f"fsync of {segment} failed: {exc.strerror or exc}"
                failed.append(segment)
                os.close(self._open.pop(segment))  # the retry opens it afresh, as at first
        # A segment not appended to in this round's interval was rotated away from: done.
        for segment in self._open.keys() - dirty:
            os.close(self._open.pop(segment))
        if failed:
            for segment in failed:
                self.appended(segment)  # try again next interval
            return False
        self.last_error = None
        self.syncs += 1
        return True

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._dirty) or self._closing)
                if self._closing:
                    return
                # One fsync for every append of the interval; only ``close`` cuts it short.
                self._changed.wait(self.interval_s)
                if self._closing:
                    return
            self.sync_once()

    def close(self) -> None:
        """Stop the thread; the segments are fsynced one last time if anything is left."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        if self._sync_thread.is_alive():
            self._sync_thread.join()
        self.sync_once()
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()
