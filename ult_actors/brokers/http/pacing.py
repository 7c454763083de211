"""New connections to one venue account, opened no faster than the venue allows.

OANDA refuses (429, then closes) a third new connection within a second. One
``ConnectionPacer`` per account is shared by every pool the account's
connection incarnations open, so a reconnect right after a drop waits its
turn instead of being refused.
"""

from __future__ import annotations

import math

import trio


class ConnectionPacer:
    """Spaces the opening of new connections at least ``1 / per_s`` seconds apart."""

    def __init__(self, per_s: float) -> None:
        if per_s <= 0:
            raise ValueError("a connection pacer needs per_s > 0")
        self.gap_s = 1 / per_s
        self._next_at = -math.inf

    async def wait(self) -> None:
        """Wait for this connection's turn to open (first come, first served)."""
        at = max(trio.current_time(), self._next_at)
        self._next_at = at + self.gap_s
        await trio.sleep_until(at)
