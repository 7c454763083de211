"""One clock for every paper venue of a file: price ticks and order arrivals on trio time.

A venue's market moves on its own interval (``tick_interval_s``) and an
order with ``latency_ms`` reaches its venue that much after submit; rather
than a sleeping task per venue (and per travelling order), ``PaperClock``
keeps one heap of due calls and one task that sleeps until the next. Trio
time, so ``MockClock`` drives it in tests.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import trio


class PaperClock:
    """Calls functions at trio times, from one task (``run``)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # equal times run in the order they were asked for
        self._changed = trio.Event()

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` at trio time ``when`` (it must not raise)."""
        first = self._due[0][0] if self._due else None
        heapq.heappush(self._due, (when, next(self._order), fn))
        if first is None or when < first:
            self._changed.set()

    async def run(self) -> None:
        """Make the calls as they fall due, until cancelled."""
        while True:
            self._changed = trio.Event()
            if not self._due:
                await self._changed.wait()
                continue
            with trio.move_on_at(self._due[0][0]):
                await self._changed.wait()
                continue  # an earlier call came in
            now = trio.current_time()
            while self._due and self._due[0][0] <= now:
                _, _, fn = heapq.heappop(self._due)
                fn()
            await trio.lowlevel.checkpoint()
