"""Where a ``full`` journal writes a lone batch: on the trio thread, or on the writer's thread.

With ``synchronous = "full"`` a batch is appended to the change log and
fdatasynced before its records are acknowledged. A batch whose scheduler
round ends with nothing else for the loop to run (a lone sequential order)
can be written right there, on the trio thread: the loop had nothing to do
while the disk works, and the batch skips the writer thread's two
hand-overs (waking that thread, then being woken back by it, with the GIL
changing hands each time), about 100 us of a lone order's time on an idle
machine. That is the faster way only while the trio thread runs again as
soon as its fdatasync returns. On a machine whose cores are busy with other
processes it does not: the kernel's scheduler lets a thread that has used
much CPU (the loop's) wait for a time slice after its I/O (~3 ms on a
loaded 2-core VM), while the writer's thread, asleep most of the time, runs
at once and wakes the loop with a direct hand-over.

So ``FsyncRoute`` times the write (append and fdatasync) where it runs: on
the writer's thread that is the disk's time, on the trio thread the disk's
time plus any wait to run again. It keeps the last ``window`` of each way
and sends a lone batch to the trio thread while that way's median is within
``saved_ns`` (what the hand-overs cost) of the writer thread's; every
``probe_every``-th lone batch goes the other way, so that a change of the
machine's load is seen.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

#: What a lone batch's two hand-overs to the writer's thread and back cost it (measured:
#: docs/performance.md, "the `full` fsync's thread hand-overs").
HAND_OVERS_NS = 100_000


class FsyncRoute:
    """Chooses, batch by batch, whether a lone ``full`` batch is written on the trio thread.

    ``choose()`` as a lone batch is about to be written (True: on the trio
    thread), then ``took(on_loop, ns)`` with how long its write took where
    it ran. Only lone batches (the loop idle otherwise) are timed: a batch
    handed over while the loop is busy waits for the GIL on the writer's thread.
    """

    def __init__(
        self,
        *,
        window: int = 8,
        probe_every: int = 64,
        saved_ns: int = HAND_OVERS_NS,
        now_ns: Callable[[], int] = time.perf_counter_ns,
        use_loop: bool = True,
    ) -> None:
        """``use_loop=False``: every lone batch goes to the writer's thread (for a test whose
        fsync waits for the loop)."""
        self.probe_every = probe_every
        self.saved_ns = saved_ns
        #: The clock the writes are timed with.
        self.now_ns = now_ns
        self.use_loop = use_loop
        #: The last ``window`` write times (ns) of each way: [writer's thread, trio thread].
        self._times = (collections.deque[int](maxlen=window), collections.deque[int](maxlen=window))
        self._loop_faster = True
        self._lone = 0
        #: Lone batches written on the trio thread and on the writer's, for benchmarks.
        self.loop_writes = 0
        self.thread_writes = 0

    def choose(self) -> bool:
        """Whether the lone batch about to be written goes on the trio thread."""
        self._lone += 1
        thread_times, loop_times = self._times
        if not self.use_loop:
            on_loop = False
        elif not loop_times:
            on_loop = True
        elif not thread_times:
            on_loop = False
        else:
            on_loop = self._loop_faster
            if self.probe_every and self._lone % self.probe_every == 0:
                on_loop = not on_loop  # the other way's times may be stale
        if on_loop:
            self.loop_writes += 1
        else:
            self.thread_writes += 1
        return on_loop

    def took(self, on_loop: bool, ns: int) -> None:
        """A lone batch's write took ``ns`` on the trio thread (``on_loop``) or the writer's."""
        self._times[on_loop].append(ns)
        thread_times, loop_times = self._times
        if thread_times and loop_times:
            self._loop_faster = _median(loop_times) <= _median(thread_times) + self.saved_ns


def _median(times: collections.deque[int]) -> int:
    return sorted(times)[len(times) // 2]
