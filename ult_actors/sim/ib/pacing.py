"""TWS's limit on incoming messages: more than ``limit`` in one second is error 100.

TWS counts every message an API client sends; over the limit it answers
error 100 and, when it goes on, drops the socket. The simulator does both at
once, so a client that ever goes over finds out in a test, not in production.
"""

from __future__ import annotations

from collections import deque

#: TWS's default: 50 messages a second per API connection.
DEFAULT_LIMIT = 50
OVER_LIMIT_CODE = 100


class MessageRate:
    """Messages received in the last second, against a limit (``None``: unlimited)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._stamps: deque[float] = deque()

    def admit(self, now: float) -> bool:
        """Count one message received at ``now`` (seconds); False if it is over the limit."""
        if self.limit is None:
            return True
        stamps = self._stamps
        while stamps and stamps[0] <= now - 1.0:
            stamps.popleft()
        stamps.append(now)
        return len(stamps) <= self.limit

    def refusal_text(self) -> str:
        """TWS's words for error 100."""
        return (
            f"Max rate of messages per second has been exceeded:max={self.limit}"
            f" rcvd={len(self._stamps)}. Disconnecting."
        )
