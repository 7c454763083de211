"""Watching for something on the trio thread, as the loop is about to sleep, while that pays.

On a virtual machine a thread that sleeps halts its virtual CPU, and what wakes it
again costs tens of microseconds of the host's exits, then a cold cache
(docs/performance.md, "the loop's busy poll"). A thread that watches for a short
while instead, when what it waits for is about to come, runs on at once. Two things are
watched so: an fdatasync begun ahead (``journal.fsync_ahead``) and the loop's own I/O
(``runtime.busy_poll``); both by ``IdleSpin``, which decides when a watch is worth
its core.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from ult_actors.run_delay import RunDelay, open_run_delay


class Watched(Protocol):
    """What an ``IdleSpin`` watches."""

    def spin(self, limit_ns: int) -> bool:
        """Watch on this thread for at most ``limit_ns``: True as soon as what is watched
        for has come, False if it did not meanwhile."""


class IdleSpin:
    """Watches for something on the trio thread as the loop is about to sleep with nothing
    else to run: what waits for it then runs without the wake-up of a sleeping thread,
    at the price of that core meanwhile.

    That price is worth paying only while the machine has a core to spare: a watch
    during which this thread waited for its core for more than ``lost_ns`` (runnable,
    another task on the core) means it has none, and the next ``pause`` watches are
    skipped (the loop sleeps as without one). Nor is it while what is watched for comes
    later than a watch: a watch that ran its whole limit without seeing it skips the
    next one, and each further such watch in a row twice as many (up to ``pause``); one
    that sees it watches at every chance again, and so does the next chance after one
    skipped while backing off whose wait ended within a watch's limit (``came_soon``).
    So a disk that takes milliseconds, or a service that nobody calls, costs the loop a
    watch in ``pause``, and a rare slow one a watch."""

    def __init__(
        self,
        limit_ns: int,
        *,
        lost_ns: int = 50_000,
        pause: int = 64,
        waited_ns: Callable[[], int] | None = None,
        off_cpu_ns: Callable[[], int] | None = None,
    ) -> None:
        """``waited_ns``: this thread's time so far runnable but not running (ns); by
        default the kernel's (``run_delay``) for the thread that first watches, else
        ``off_cpu_ns``: its wall clock less its CPU time, which counts its sleeps too (a
        watch of the loop's I/O lets the GIL go at each look, and a helper thread that
        takes it meanwhile says nothing of the machine's cores). After a watch,
        ``waited_ns`` is read only if ``off_cpu_ns`` grew by over ``lost_ns`` (the run
        delay is part of that time): the kernel's is a system call, and what follows a
        watch that saw something is a request waiting to be served."""
        self.limit_ns = limit_ns
        self.lost_ns = lost_ns
        self.pause = pause
        self._waited_ns = waited_ns
        self._off_cpu_ns = off_cpu_ns or _off_cpu_ns
        self._skip = 0
        self._missed = 0  # the watches skipped after the last whole watch that saw nothing
        self._for_core = False  # the chances skipped now are a pause for the core
        #: Watches made, and those that saw what they watched for (for benchmarks).
        self.watches = 0
        self.seen = 0

    def __call__(self, watched: Watched, timeout_ns: int) -> None:
        """Watch ``watched`` for at most ``limit_ns`` (and ``timeout_ns``, when the loop
        would wake for a deadline sooner), unless paused."""
        if self._skip:
            self._skip -= 1
            return
        waited_ns, off_cpu_ns = self._waited_ns, self._off_cpu_ns
        if waited_ns is None:
            waited_ns = self._waited_ns = open_run_delay() or off_cpu_ns
        waited, off_cpu = waited_ns(), off_cpu_ns()
        self.watches += 1
        limit = min(self.limit_ns, timeout_ns)
        seen = watched.spin(limit)
        self.seen += seen
        if off_cpu_ns() - off_cpu > self.lost_ns and waited_ns() - waited > self.lost_ns:
            self._skip = self.pause
            self._for_core = True
        elif seen:
            self._missed = 0
        elif limit == self.limit_ns:  # a whole watch: what it watched for came later
            self._missed = self._skip = min(2 * self._missed or 1, self.pause)
            self._for_core = False

    def came_soon(self) -> None:
        """What it watches for came, within a watch's limit, after a chance skipped while
        it backs off: a watch would have seen it (a burst after a quiet spell), so the next
        chance is watched. A pause for the core stands."""
        if not self._for_core:
            self._skip = self._missed = 0

    def close(self) -> None:
        """Release the kernel's figures it opened (opened again if it watches again)."""
        if isinstance(self._waited_ns, RunDelay):
            self._waited_ns.close()
            self._waited_ns = None


def _off_cpu_ns() -> int:
    """The calling thread's wall clock less its CPU time."""
    return time.perf_counter_ns() - time.thread_time_ns()
