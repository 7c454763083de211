"""Where a ``full`` journal writes a lone batch: on the trio thread, or on the writer's thread.

With ``synchronous = "full"`` a batch is appended to the change log and
fdatasynced before its records are acknowledged. A batch whose scheduler
round ends with nothing else for the loop to run (a lone sequential order)
can be written right there, on the trio thread: the loop had nothing to do
while the disk works, and the batch skips the writer thread's two
hand-overs (waking that thread, then being woken back by it, the GIL
changing hands each time), about 100 us of a lone order's time. That is the
faster way only while the trio thread runs again as soon as its fdatasync
returns. On a machine whose cores other processes keep busy it does not:
the kernel's scheduler lets a thread that has used much CPU (the loop's)
wait for a time slice after its I/O (~3 ms on a loaded 2-core VM), while
the writer's thread, asleep most of the time, runs at once and wakes the
loop with a direct hand-over.

So ``FsyncRoute`` measures that wait itself: how long the trio thread was
runnable but not running while it wrote a batch (the kernel's per-thread
``run_delay``, Linux's ``/proc/.../schedstat``); the write's own time would
not tell it, being mostly the disk's, for either way alike. A lone batch
goes to the trio thread while three quarters of its last ``window`` waits
are within ``late_ns`` (what the hand-overs cost: on a busy machine the
waits come and go, and a few late ones cost more than the hand-overs save)
and three quarters of its last writes there within ``slow_ns``: while a
write is on the trio thread the loop serves nobody (a cancel, the kill
switch), and a disk that slow gains little from the saved hand-overs.
Otherwise it goes to the writer's thread, with every ``probe_every``-th
lone batch tried on the trio thread again, so that a quieter machine or
disk is seen. Where the kernel does not tell the wait, every batch goes to
the writer's thread.

The same choice is made for a lone ``submit`` record that would otherwise
go ahead with its fdatasync begun through io_uring
(``SqliteStore._syncs_here``): on the trio thread it is fdatasynced before
it returns; else the ring serves it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from ult_actors.run_delay import RunDelay, open_run_delay

#: What a lone batch's two hand-overs to the writer's thread and back cost it (measured:
#: docs/performance.md, "the `full` fsync's thread hand-overs").
HAND_OVERS_NS = 100_000
#: A write (append and fdatasync) slower than this is not made on the trio thread.
SLOW_WRITE_NS = 1_000_000


class FsyncRoute:
    """Chooses, batch by batch, whether a lone ``full`` batch is written on the trio thread.

    ``choose()`` as a lone batch is about to be written (True: on the trio
    thread; call it there), then ``write_here(write)`` to write it so.
    """

    def __init__(
        self,
        *,
        window: int = 8,
        probe_every: int = 64,
        late_ns: int = HAND_OVERS_NS,
        slow_ns: int = SLOW_WRITE_NS,
        run_delay_ns: Callable[[], int] | None = None,
        now_ns: Callable[[], int] = time.perf_counter_ns,
        use_loop: bool = True,
    ) -> None:
        """``run_delay_ns``: the trio thread's time runnable but not running so far (ns);
        by default read from the kernel for the thread that first calls ``choose``.
        ``use_loop=False``: every batch goes to the writer's thread (for a test whose
        fsync waits for the loop)."""
        self.probe_every = probe_every
        self.late_ns = late_ns
        self.slow_ns = slow_ns
        self._now_ns = now_ns
        self.use_loop = use_loop
        self._run_delay_ns = run_delay_ns
        self._opened = run_delay_ns is not None
        #: How long the trio thread waited to run while writing its last ``window`` batches,
        #: and how long those writes took.
        self._waits = collections.deque[int](maxlen=window)
        self._writes = collections.deque[int](maxlen=window)
        self._lone = 0
        #: Lone batches written on the trio thread and on the writer's, for benchmarks.
        self.loop_writes = 0
        self.thread_writes = 0

    def choose(self) -> bool:
        """Whether the lone batch about to be written goes on the trio thread."""
        self._lone += 1
        if not self._opened:
            self._run_delay_ns = open_run_delay()
            self._opened = True
        if not self.use_loop or self._run_delay_ns is None:
            on_loop = False
        elif not self._waits or (
            _upper_quartile(self._waits) <= self.late_ns
            and _upper_quartile(self._writes) <= self.slow_ns
        ):
            on_loop = True
        else:
            on_loop = bool(self.probe_every) and self._lone % self.probe_every == 0
        if on_loop:
            self.loop_writes += 1
        else:
            self.thread_writes += 1
        return on_loop

    def write_here(self, write: Callable[[], None]) -> None:
        """Run ``write`` (on the trio thread) and note how long it took and how long the
        thread waited to run meanwhile; what ``write`` raises is raised."""
        waited, began = self._run_delay(), self._now_ns()
        write()
        self._writes.append(self._now_ns() - began)
        self._waits.append(self._run_delay() - waited)

    def _run_delay(self) -> int:
        read = self._run_delay_ns
        assert read is not None, "choose() said the trio thread"
        try:
            return read()
        except (OSError, ValueError, IndexError):
            # The kernel's figure is gone: never a reason to fail a write; no more guesses.
            self.use_loop = False
            return 0

    def close(self) -> None:
        """Close what ``choose`` opened (it opens again if called again)."""
        if isinstance(self._run_delay_ns, RunDelay):  # the kernel's, opened by ``choose``
            self._run_delay_ns.close()
            self._run_delay_ns = None
            self._opened = False


def _upper_quartile(times: collections.deque[int]) -> int:
    return sorted(times)[len(times) * 3 // 4]
