"""OANDA's request and connection limits, as the simulator enforces them.

OANDA's development guide: at most 100 requests per second on one
established connection and at most 2 new connections per second; excess is
refused with 429. Here both are off (0) unless set, so tests and chaos runs
choose their own limits (``--rate-limit``, ``--connection-limit``,
``POST /_sim/rate-limit``).

Time is trio's clock, so a test on a MockClock decides exactly which requests
share a second. Each budget is a one-second window opened by the first
request after the previous one ended. A connection is the simulator task
serving it: the HTTP server serves each connection's requests in one task of
its own, so a context variable set on its first request marks it.
"""

from __future__ import annotations

import math
from contextvars import ContextVar

import msgspec
import trio

__all__ = ["Limiter", "RateLimits", "Refusal"]


class RateLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The limits enforced; 0 is no limit."""

    #: Requests per second on one connection (OANDA: 100).
    per_second: int = 0
    #: New connections per second (OANDA: 2); one over it is answered 429 and closed.
    new_connections_per_second: int = 0

    def __post_init__(self) -> None:
        if self.per_second < 0 or self.new_connections_per_second < 0:
            raise ValueError("rate limits must not be negative (0: no limit)")


class Refusal(msgspec.Struct, frozen=True):
    """A request over a limit: why, and when the window ends."""

    message: str
    retry_after_s: float
    #: The connection is to be closed after the answer (it was one too many).
    close: bool


class _Window:
    """Uses of one budget in the current one-second window."""

    def __init__(self) -> None:
        self.start = -math.inf
        self.used = 0

    def take(self, now: float, limit: int) -> float | None:
        """Use one; ``None`` if allowed, else the seconds until the window ends."""
        if now >= self.start + 1:
            self.start, self.used = now, 0
        if self.used >= limit:
            return self.start + 1 - now
        self.used += 1
        return None


#: The request window of the connection the current task serves (unset: a new connection).
_connection: ContextVar[_Window] = ContextVar("oanda_sim_connection")


class Limiter:
    """Counts requests per connection and new connections; says which to refuse."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        self._connections = _Window()
        #: Requests refused by a limit (tests and chaos scripts read this).
        self.refused = 0

    def set(self, limits: RateLimits) -> None:
        """Enforce ``limits`` from now on; windows start afresh."""
        self.limits = limits
        self._connections = _Window()

    def check(self) -> Refusal | None:
        """Count the current request; a ``Refusal`` if it is over a limit."""
        now = trio.current_time()
        window = _connection.get(None)
        if window is None:  # this task's first request: a new connection
            window = _Window()
            _connection.set(window)
            limit = self.limits.new_connections_per_second
            wait = self._connections.take(now, limit) if limit else None
            if wait is not None:
                self.refused += 1
                return Refusal("Too many new connections per second", wait, close=True)
        limit = self.limits.per_second
        wait = window.take(now, limit) if limit else None
        if wait is not None:
            self.refused += 1
            return Refusal("Too many requests per second on this connection", wait, close=False)
        return None
