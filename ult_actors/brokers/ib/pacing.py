"""Outgoing message pacing: TWS allows 50 messages a second per API connection.

Above that TWS answers error 100 and may close the socket, so the connector
spaces its messages: a burst of ``burst`` goes out at once, after that one
every ``1 / rate`` seconds (a virtual-schedule token bucket). TWS counts
messages as they arrive, so the schedule alone is not enough: a loop held up
for a moment (a long step, a starved process) wakes every sender whose slot
passed meanwhile at once. A pacer made ``within`` a limit therefore also
keeps the times messages actually left, and holds one back while the last
second already saw the limit go. Time is trio's clock, so tests run it on a
mock clock.
"""

from __future__ import annotations

from collections import deque

import trio


class MessagePacer:
    """Spaces calls to ``wait`` to at most ``rate`` per second after a burst."""

    def __init__(self, rate: float = 45.0, burst: int = 10, *, per_second: int = 0) -> None:
        """``per_second`` (0: none): at most that many messages leave in any one second."""
        if rate <= 0 or burst < 1 or per_second < 0:
            raise ValueError("rate must be positive, burst at least 1, per_second not negative")
        self.interval = 1.0 / rate
        self.burst = burst
        self._next_free = float("-inf")
        #: When the last ``per_second`` messages left (none kept without a limit).
        self._left: deque[float] | None = deque(maxlen=per_second) if per_second else None

    def reserve(self, now: float) -> float:
        """Seconds to wait before the next message may leave; books its slot."""
        self._next_free = max(self._next_free, now - (self.burst - 1) * self.interval)
        delay = self._next_free - now
        self._next_free += self.interval
        return delay if delay > 1e-9 else 0.0  # float dust is not a wait

    @classmethod
    def within(cls, per_second: float) -> MessagePacer:
        """A pacer that never lets more than ``per_second`` messages out in any one second.

        A burst and the steady rate after it add up in one window, so the
        burst (a ninth of the limit) is taken from the rate.
        """
        burst = max(1, round(per_second / 9))
        return cls(
            rate=max(per_second - burst, per_second / 2),
            burst=burst,
            per_second=max(1, int(per_second)),
        )

    async def wait(self) -> None:
        """Until the next message may be sent (returns at once within the burst).

        The message counts as gone when this returns: send it right away, one at a
        time (``IbSession.send`` holds a turn from here to the socket).
        """
        delay = self.reserve(trio.current_time())
        if delay > 0:
            await trio.sleep(delay)
        left = self._left
        if left is None:
            return
        now = trio.current_time()
        # Woken late (its slot passed while the loop was held up): wait while the last
        # second already saw the limit leave. No await between the check and the mark.
        while len(left) == left.maxlen and left[0] + 1.0 > now:
            await trio.sleep_until(left[0] + 1.0)  # then ``now`` is at least that
            now = trio.current_time()
        left.append(now)
