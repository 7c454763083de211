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


class Watched(Protocol):
    """What an ``IdleSpin`` watches."""

    def spin(self, limit_ns: int) -> bool:
        """Watch on this thread for at most ``limit_ns``: True once what is watched for
        has come (then, False if not)."""


class IdleSpin:
    """Watches for something on the trio thread as the loop is about to sleep with nothing
    else to run: what waits for it then runs without the wake-up of a sleeping thread,
    at the price of that core meanwhile.

    That price is worth paying only while the machine has a core to spare: a watch
    during which this thread lost its core for more than ``lost_ns`` (its CPU time fell
    behind the wall clock: others wanted the core) means it has none, and the next
    ``pause`` watches are skipped (the loop sleeps as without one). Nor is it while what
    is watched for comes later than a watch: a watch that ran its whole limit without
    seeing it skips the next one, and each further such watch in a row twice as many
    (up to ``pause``); one that sees it watches at every chance again. So a disk that
    takes milliseconds, or a service that nobody calls, costs the loop a watch in
    ``pause``, and a rare slow one a watch."""

    def __init__(
        self,
        limit_ns: int,
        *,
        lost_ns: int = 50_000,
        pause: int = 64,
        wall_ns: Callable[[], int] = time.perf_counter_ns,
        cpu_ns: Callable[[], int] = time.thread_time_ns,
    ) -> None:
        self.limit_ns = limit_ns
        self.lost_ns = lost_ns
        self.pause = pause
        self._wall_ns = wall_ns
        self._cpu_ns = cpu_ns
        self._skip = 0
        self._missed = 0  # the watches skipped after the last whole watch that saw nothing
        #: Watches made, and those that saw what they watched for (for benchmarks).
        self.watches = 0
        self.seen = 0

    def __call__(self, watched: Watched, timeout_ns: int) -> None:
        """Watch ``watched`` for at most ``limit_ns`` (and ``timeout_ns``, when the loop
        would wake for a deadline sooner), unless paused."""
        if self._skip:
            self._skip -= 1
            return
        wall, cpu = self._wall_ns(), self._cpu_ns()
        self.watches += 1
        limit = min(self.limit_ns, timeout_ns)
        seen = watched.spin(limit)
        self.seen += seen
        if (self._wall_ns() - wall) - (self._cpu_ns() - cpu) > self.lost_ns:
            self._skip = self.pause
        elif seen:
            self._missed = 0
        elif limit == self.limit_ns:  # a whole watch: what it watched for came later
            self._missed = self._skip = min(2 * self._missed or 1, self.pause)
