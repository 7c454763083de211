"""The paper accounts' writes: logged at once on the trio thread, folded into the file later.

Each venue call's changes (one ``Change``, ``batch.stage_change``) are
``record``ed: encoded and appended to the change log (``paper.changelog``),
so a ``kill -9`` right after keeps them, and queued as they are for the
writer's thread, which folds their rows (nothing to decode). The thread commits
what has queued up at most once per ``interval_s`` (100 ms), every batch
of that time in one transaction: the SQLite work of an order is shared
with its neighbours and never runs on the trio thread, and nothing on the
order's path waits for it.

Nothing waits for the thread but those who ask (``durable``: a connection
leaving, so that the next one reloads all of it from the file); they hurry
it. A failed commit or log write fails this writer for good: every call
after it gets ``BrokerUnavailable``, the owner is told (``on_failure``)
and reopens the file, which replays the log.

An in-memory store keeps no rows (``keeps_rows`` is false: the venues hold
everything). An account under a virtual clock (``trio.testing.MockClock``)
commits each batch at once on the trio thread, with no log and no thread:
a thread's real time is invisible to such a clock.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

import trio

from ult_actors import segment_log
from ult_actors.brokers.paper import changelog
from ult_actors.brokers.paper.batch import Change, Rows, encode_change
from ult_actors.brokers.paper.store import PaperStore, unusable_account
from ult_actors.errors import BrokerUnavailable
from ult_actors.os_thread import name_os_thread

#: Most time between a batch being logged and its commit to the file. A commit's
#: own cost (the thread's wake-up, the B-trees' last pages written again, the
#: checkpoints those pages bring on) is ~0.4 ms of CPU: at 20 ms it doubled the
#: fold's CPU per order of a lone client (~1k orders/s); longer only keeps ended
#: orders in memory a little longer, and whoever waits for the file hurries it.
COMMIT_INTERVAL_S = 0.1

#: ``Final``: compiled (mypyc), a C static; an imported name is a look-up at every record.
_encode_change: Final = encode_change

#: Queued for the thread: a record (its sequence number and its ``Change``), a closed
#: log segment to delete once the records before it are in the file, or ``None``:
#: commit what is queued and stop.
_Job = tuple[int, Change] | Path | None


def _virtual_clock() -> bool:
    """Whether trio runs on a ``MockClock`` (never, unless ``trio.testing`` is loaded:
    importing it only to ask would cost the service megabytes)."""
    testing = sys.modules.get("trio.testing")
    return testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock)


class BatchWriter:
    """Logs each venue call's record and commits them, many at a time, on one thread."""

    def __init__(
        self,
        store: PaperStore,
        *,
        on_failure: Callable[[BaseException], None],
        interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        self._store = store
        self._on_failure = on_failure
        self.interval_s = interval_s
        #: Whether venues stage rows at all (an in-memory store keeps none).
        self.keeps_rows = not store.in_memory
        #: The last record made and the last one committed to the file.
        self.staged_seq = 0
        self.committed_seq = 0
        self.commits = 0
        self.failure: BaseException | None = None
        self._token = trio.lowlevel.current_trio_token()
        self._waiters: segment_log.Waiters = []
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        #: Set to commit without waiting out the interval (someone waits, or closing).
        self._hurry = threading.Event()
        self._log: changelog.ChangeLog | None = None
        #: ``changelog.SEGMENT_BYTES`` when made: an attribute, not a module's look-up a record.
        self._segment_bytes = changelog.SEGMENT_BYTES
        # Not ``_thread``: mypyc names its C field ``__thread``, a keyword of C compilers.
        self._worker: threading.Thread | None = None
        if self.keeps_rows and not _virtual_clock():
            try:
                self._log = changelog.ChangeLog(store.path)
            except OSError as exc:
                raise unusable_account(store.path, exc) from None
            self._worker = threading.Thread(target=self._work, name=f"paper-writer:{store.path}")
            self._worker.daemon = True
            self._worker.start()
            name_os_thread(self._worker)

    def record(self, change: Change) -> int:
        """Make ``change`` (``batch.stage_change``'s) survive a ``kill -9`` now and reach the
        file soon; its sequence number.

        ``BrokerUnavailable`` once the writer has failed (this call's write included).
        """
        if self.failure is not None:  # ``check``, without a call on every venue call
            raise self.unavailable()
        self.staged_seq += 1
        seq = self.staged_seq
        try:
            if self._log is None:
                rows = Rows()
                rows.add(change, seq)
                self._store.commit(rows)
                self.committed_seq = seq
                self.commits += 1
            else:
                log = self._log
                log.append(_encode_change(change))
                self._jobs.put((seq, change))
                if log.size >= self._segment_bytes:
                    self._jobs.put(log.rotate())
        except Exception as exc:
            self._fail(exc)
            raise self.unavailable() from None
        return seq

    def check(self) -> None:
        """``BrokerUnavailable`` if the writer has failed: what the venue holds may be lost."""
        if self.failure is not None:
            raise self.unavailable()

    async def durable(self, seq: int) -> None:
        """Return once record ``seq`` is in the file (at once if it is)."""
        if self.committed_seq < seq and self.failure is None:
            done = trio.Event()
            entry = (seq, done)
            self._waiters.append(entry)
            self._hurry.set()
            # The thread may have committed it before it could see this waiter.
            if self.committed_seq < seq and self.failure is None:
                await done.wait()
            else:
                self._waiters.remove(entry)
        self.check()
        await trio.lowlevel.checkpoint_if_cancelled()

    def unavailable(self) -> BrokerUnavailable:
        """The error every caller gets after a failed write."""
        return BrokerUnavailable(
            f"paper account file {self._store.path} could not be written ({self.failure});"
            " reopening it"
        )

    async def aclose(self) -> None:
        """Commit what is queued, then stop the thread (it ends even if cancelled).

        The log is deleted once the file has all of it; after a failure it stays,
        for the next open to replay.
        """
        if self._worker is not None:
            self._jobs.put(None)
            self._hurry.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._worker.join)
        if self._log is not None:
            self._log.close()
            if self.failure is None and self.committed_seq == self.staged_seq:
                changelog.remove(self._store.path)

    # -- the trio side ---------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        if self.failure is not None:
            return
        self.failure = error
        self._wake()
        self._on_failure(error)

    def _committed(self, error: BaseException | None) -> None:
        if error is not None:
            self._fail(error)
        self._wake()

    def _wake(self) -> None:
        self._waiters = segment_log.wake_reached(
            self._waiters, self.committed_seq, failed=self.failure is not None
        )

    # -- the writer's thread -------------------------------------------------------

    def _work(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            if jobs[0] is not None:
                # Let the records of the next few ms join this commit.
                self._hurry.wait(self.interval_s)
            self._hurry.clear()
            while True:
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            error = self._commit(jobs)
            if error is not None or self._waiters:
                try:
                    self._token.run_sync_soon(self._committed, error)
                except trio.RunFinishedError:
                    return  # nobody is waiting any more
            if error is not None or None in jobs:
                return

    def _commit(self, jobs: list[_Job]) -> BaseException | None:
        rows = Rows()
        segments: list[Path] = []
        try:
            for job in jobs:
                if isinstance(job, tuple):
                    rows.add(job[1], job[0])
                elif job is not None:
                    segments.append(job)
            if rows:
                self._store.commit(rows)
                self.commits += 1
            for segment in segments:
                segment.unlink(missing_ok=True)
            # Only now: a caller ``durable`` lets go must find the folded segments gone.
            if rows:
                self.committed_seq = rows.seq
        except BaseException as exc:  # handed to the trio side, which fails the writer
            return exc
        return None
