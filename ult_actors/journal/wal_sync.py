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

Checkpoints (copying the WAL's pages into the database file) move here too:
SQLite runs one in the committing connection every 1,000 WAL pages, a few
ms of page copies and two fsyncs inside some unlucky order's commit (on the
trio thread, where small commits run). Given a ``checkpoint``, the syncer
runs it instead of the plain fsync once ``checkpoint_every`` commits have
gathered; a checkpoint fsyncs the WAL before copying it, so it covers what
the fsync would have. The writer's own automatic checkpoint stays, at a
much larger size, only as a bound should this thread fall behind.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

#: With a background checkpoint, the writer's own automatic one only bounds the WAL.
WRITER_CHECKPOINT_PAGES = 10_000


class WalCheckpointer:
    """A passive checkpoint of one WAL-mode SQLite file, through a connection of its own.

    Passive: it copies what it can without waiting for, or blocking, the
    writer; the writer starts the WAL over at its next commit once all of it
    has been copied. A failure is an ``OSError`` (the disk's), like an fsync's.
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._conn: sqlite3.Connection | None = None

    def __call__(self) -> None:
        """Copy the WAL's committed pages into the database file, fsyncs included."""
        try:
            if self._conn is None:
                # Used by the syncer's thread, then by ``close`` on the closing one.
                self._conn = sqlite3.connect(
                    self.db_path, isolation_level=None, check_same_thread=False
                )
                self._conn.execute("PRAGMA synchronous = NORMAL")  # fsyncs the checkpoint
                # A reader may meet a lock for a moment (the writer starting the WAL
                # over): this thread can wait; a failure would refuse new orders.
                self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            raise OSError(f"checkpoint of {self.db_path} failed: {exc}") from exc

    def close(self) -> None:
        """Close the connection (a later call opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class WalSyncer:
    """Fsyncs one ``-wal`` file ``interval_s`` after a commit, on its own thread.

    The journal's writer calls ``committed()`` after each commit (from any
    thread); ``close()`` stops the thread after a last fsync of what is left.
    With a ``checkpoint``, every ``checkpoint_every`` commits the fsync is a
    checkpoint instead (which fsyncs the WAL first).
    """

    def __init__(
        self,
        wal_path: Path,
        interval_s: float,
        *,
        fsync: Callable[[int], None] = os.fsync,
        checkpoint: Callable[[], None] | None = None,
        checkpoint_every: int = 64,
    ) -> None:
        self.wal_path = wal_path
        self.interval_s = interval_s
        self._fsync = fsync
        self._checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self._changed = threading.Condition()
        self._dirty = False  # committed since the last fsync
        self._commits = 0  # since the last checkpoint
        self._closing = False
        #: Fsyncs done (checkpoints included), checkpoints done; why the last one failed,
        #: until one succeeds (the journal refuses new orders meanwhile: what it commits
        #: may not reach the disk).
        self.syncs = 0
        self.checkpoints = 0
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
            self._commits += 1
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
            commits, checkpoint = self._commits, self._checkpoint
            if checkpoint is not None and commits >= self.checkpoint_every:
                self._commits = 0
            else:
                checkpoint = None
        if checkpoint is not None:
            return self._run_checkpoint(checkpoint, commits)
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

    def _run_checkpoint(self, checkpoint: Callable[[], None], commits: int) -> bool:
        try:
            checkpoint()
        except OSError as exc:
            self.last_error = str(exc)
            with self._changed:
                self._commits += commits  # still owed
            self.committed()  # try again next interval
            return False
        self.last_error = None
        self.syncs += 1
        self.checkpoints += 1
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
