"""The WAL's fsync, batched off the order path (for ``synchronous = "normal"``).

In WAL mode with ``synchronous = NORMAL`` a commit writes its frames to the
``-wal`` file without an fsync: a ``kill -9`` loses nothing (the frames are
in the OS's page cache), a machine crash may lose them. SQLite itself fsyncs
the WAL before each checkpoint and the database after it; ``WalSyncer``
covers the frames in between: once something has been committed, it waits
``interval_s`` and fsyncs the WAL, on its own thread, so a machine crash
loses at most the commits of the last interval (plus one fsync's time) and
no order ever waits for an fsync. Idle, it sleeps: nothing committed, no
fsync, no wake-up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


class WalSyncer:
    """Fsyncs one ``-wal`` file ``interval_s`` after a commit, on its own thread.

    The journal's writer calls ``committed()`` after each commit (from any
    thread); ``close()`` stops the thread after a last fsync of what is left.
    """

    def __init__(
        self,
        wal_path: Path,
        interval_s: float,
        *,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        self.wal_path = wal_path
        self.interval_s = interval_s
        self._fsync = fsync
        self._changed = threading.Condition()
        self._dirty = False  # committed since the last fsync
        self._closing = False
        #: Fsyncs done; why the last one failed, until one succeeds (the journal refuses
        #: new orders meanwhile: what it commits may not reach the disk).
        self.syncs = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(
            target=self._work, name=f"wal-sync:{wal_path.name}", daemon=True
        )

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def committed(self) -> None:
        """Something was committed: fsync it within ``interval_s``."""
        with self._changed:
            if not self._dirty:
                self._dirty = True
                self._changed.notify()

    def sync_once(self) -> bool:
        """Fsync the WAL if anything was committed since the last fsync; whether it did."""
        with self._changed:
            if not self._dirty:
                return False
            # Cleared before the fsync: a commit that lands during it is fsynced next time.
            self._dirty = False
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return False  # no WAL (yet, or any more): nothing of it to lose
        try:
            self._fsync(fd)  # flushes the file's pages, whichever descriptor wrote them
        except OSError as exc:
            self.last_error = f"fsync of {self.wal_path} failed: {exc.strerror or exc}"
            self.committed()  # try again next interval
            return False
        finally:
            os.close(fd)
        self.last_error = None
        self.syncs += 1
        return True

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._dirty or self._closing)
                if self._closing:
                    return
                # One fsync for every commit of the interval; only ``close`` cuts it short.
                self._changed.wait(self.interval_s)
                if self._closing:
                    return
            self.sync_once()

    def close(self) -> None:
        """Stop the thread; the WAL is fsynced one last time if anything is left."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join()
        self.sync_once()
