"""A failure that repeats every poll, logged so an operator sees it without a flood.

A standby that cannot reach its database asks again every ``poll_s`` (twice a
second by default); one line per try would drown the rest of the log. The
first failure is logged at once, then at most one line every ``every_s``
saying how many tries failed since the last line, and one line when the
outage ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio


class OutageLog:
    """Logs ``what`` failing: first at once, then at most every ``every_s`` with counts;
    ``back`` once it works again."""

    def __init__(
        self,
        log: Any,
        what: str,
        back: str,
        *,
        every_s: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.log = log
        self.what = what
        self.back = back
        self.every_s = every_s
        self._clock = clock
        #: Failed tries since the outage began (0: none is going on).
        self.failures = 0
        self._began = 0.0
        self._logged_at = -math.inf
        self._unlogged = 0

    def failed(self, error: str) -> None:
        """One more try failed with ``error`` (already free of secrets)."""
        now = self._clock()
        if self.failures == 0:
            self._began = now
        self.failures += 1
        self._unlogged += 1
        if now - self._logged_at < self.every_s:
            return
        self.log.warning(
            self.what,
            error=error,
            failed_tries=self.failures,
            since_last_line=self._unlogged,
            for_s=round(now - self._began, 1),
        )
        self._logged_at = now
        self._unlogged = 0

    def ended(self) -> None:
        """A try succeeded: say so once if there was an outage, and start afresh."""
        if self.failures == 0:
            return
        self.log.info(
            self.back,
            failed_tries=self.failures,
            for_s=round(self._clock() - self._began, 1),
        )
        self.failures = 0
        self._logged_at = -math.inf
        self._unlogged = 0
