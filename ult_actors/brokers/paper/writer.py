"""The paper accounts' group commit: batches staged on the trio thread, written on another.

Venues stage rows into the open ``Batch`` (``batch()``) and attach what must
wait for them to be on disk (``after_commit``: the venue's order updates).
The open batch is handed to the writer's thread at the end of the scheduler
round that opened it (by a flusher task woken when it opens: waking a task
costs no syscalls, where ``run_sync_soon`` writes trio's wake-up socket),
or, while a commit is running, as soon as that commit is done: so under load
many venue events share one transaction, and at low load nothing waits for a
timer. Batches commit one at a time, in order.

A small batch (``inline_max_rows``) found while the thread is idle is
committed on the trio thread at that moment instead: a WAL commit without
an fsync (``synchronous=NORMAL``) takes tens of µs, less than waking the
thread and waiting for its answer; the thread then holds no batch, so the
connection is never used by two threads at once.

An in-memory account (``state_path = ":memory:"``) commits each venue
event at once on the trio thread instead: there is no disk to wait for, and
a hand-over would cost more than the commit. So does an account under a
virtual clock (``trio.testing.MockClock``): a thread's real time is
invisible to such a clock, which would jump ahead while a commit runs.

Nothing the venue did is shown before it is committed (a reply waits in
``durable``, an update in ``after_commit``), so a ``kill -9`` can only lose
what nobody was told. A failed commit fails this writer for good: every
waiter, now and later, gets ``BrokerUnavailable``, and the owner reopens
the file (the venues reload what it has).
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Callable

import trio

from ult_actors.brokers.paper.store import MEMORY, Batch, PaperStore
from ult_actors.errors import BrokerUnavailable


def _virtual_clock() -> bool:
    """Whether trio runs on a ``MockClock`` (never, unless ``trio.testing`` is loaded:
    importing it only to ask would cost the service megabytes)."""
    testing = sys.modules.get("trio.testing")
    return testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock)


class _Pending:
    """A batch and those waiting for it."""

    def __init__(self, seq: int) -> None:
        self.batch = Batch(seq)
        self.callbacks: list[Callable[[], None]] = []
        self.done = trio.Event()


class BatchWriter:
    """Stages venue writes and commits them in batches on one thread."""

    def __init__(
        self,
        store: PaperStore,
        *,
        on_failure: Callable[[BaseException], None],
        inline_max_rows: int = 16,
    ) -> None:
        self._store = store
        #: A batch of at most this many rows, the thread idle, commits on the trio
        #: thread: quicker than the hand-off (0: every batch goes to the thread).
        self.inline_max_rows = inline_max_rows
        self._on_failure = on_failure
        self._token = trio.lowlevel.current_trio_token()
        self._open: _Pending | None = None
        self._writing: _Pending | None = None
        self._flush_scheduled = False
        #: Where the flusher task waits for a batch to open (see ``_flusher``).
        self._flush_wanted = trio.lowlevel.ParkingLot()
        self._closed = False
        #: The last batch opened and the last one committed.
        self.staged_seq = 0
        self.committed_seq = 0
        self.commits = 0
        self.failure: BaseException | None = None
        self._jobs: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._at_once = store.path == MEMORY or _virtual_clock()
        if not self._at_once:
            self._thread = threading.Thread(target=self._work, name=f"paper-writer:{store.path}")
            self._thread.daemon = True
            self._thread.start()
            trio.lowlevel.spawn_system_task(self._flusher, name=f"paper-flush:{store.path}")

    def batch(self) -> Batch:
        """The open batch (opened if need be); stage rows into it."""
        pending = self._open
        if pending is None:
            self.staged_seq += 1
            pending = self._open = _Pending(self.staged_seq)
            if self._writing is None and not self._flush_scheduled and not self._at_once:
                # At the end of this scheduler round: whatever else runs now joins it.
                self._flush_scheduled = True
                self._flush_wanted.unpark()
        return pending.batch

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (on the trio thread) once the open batch has committed.

        The last call of a venue event's staging: an account written at once
        commits here.
        """
        assert self._open is not None, "stage rows first"
        self._open.callbacks.append(callback)
        if self._at_once:
            self._flush()

    async def durable(self, seq: int) -> None:
        """Return once batch ``seq`` has committed (at once if it has)."""
        while self.committed_seq < seq and self.failure is None:
            pending = self._writing if self._writing and self._writing.batch.seq >= seq else None
            pending = pending or self._open
            assert pending is not None
            await pending.done.wait()
        if self.failure is not None:
            raise self.unavailable()
        await trio.lowlevel.checkpoint_if_cancelled()

    def unavailable(self) -> BrokerUnavailable:
        """The error every waiter gets after a failed commit."""
        return BrokerUnavailable(
            f"paper account file {self._store.path} could not be written ({self.failure});"
            " reopening it"
        )

    async def aclose(self) -> None:
        """Commit what is staged, then stop the thread (it ends even if cancelled)."""
        try:
            while (self._open or self._writing) and self.failure is None:
                last = self._open or self._writing
                assert last is not None
                await last.done.wait()
        finally:
            self._closed = True
            self._flush_wanted.unpark()
            if self._thread is not None:
                self._jobs.put(None)  # after the commit running now, if any
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._thread.join)

    # -- the trio side of the hand-over -----------------------------------------

    async def _flusher(self) -> None:
        """Flush each batch in the scheduler round after the one that opened it."""
        while not self._closed:
            # Looked at before parking: a batch may open before this task first runs.
            if self._flush_scheduled:
                self._flush()
            else:
                await self._flush_wanted.park()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._writing is not None or self._open is None or self.failure is not None:
            return
        self._writing, self._open = self._open, None
        if self._thread is not None and len(self._writing.batch) > self.inline_max_rows:
            self._jobs.put(self._writing)
            return
        try:
            self._store.commit(self._writing.batch)
        except Exception as exc:
            self._committed(self._writing, exc)
        else:
            self._committed(self._writing, None)

    def _committed(self, pending: _Pending, error: BaseException | None) -> None:
        self._writing = None
        if error is not None:
            self._fail(error, pending)
            return
        self.committed_seq = pending.batch.seq
        self.commits += 1
        pending.done.set()
        for callback in pending.callbacks:
            callback()
        self._flush()

    def _fail(self, error: BaseException, pending: _Pending) -> None:
        self.failure = error
        pending.done.set()
        if self._open is not None:
            self._open.done.set()
        self._on_failure(error)

    # -- the writer's thread -------------------------------------------------------

    def _work(self) -> None:
        while True:
            pending = self._jobs.get()
            if pending is None:
                return
            error: BaseException | None = None
            try:
                self._store.commit(pending.batch)
            except BaseException as exc:  # handed to the trio side, which fails the writer
                error = exc
            with contextlib.suppress(trio.RunFinishedError):  # nobody is waiting any more
                self._token.run_sync_soon(self._committed, pending, error)
