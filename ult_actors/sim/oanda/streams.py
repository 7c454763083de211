"""The simulator's two v20 streams: transactions and prices, as newline-delimited JSON.

Each open stream is a ``StreamSlot``: a queue the account fills, a wake-up
event, and what faults did to it (``muted``: nothing more is sent;
``beats``: heartbeats on or off; a ``CUT`` entry in the queue closes the
connection once what was queued before it is sent). Heartbeats go out every
``heartbeat_s`` seconds of trio's clock, so a test on a MockClock sees them
at exact virtual times.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import msgspec
import trio

from ult_actors.sim.http import DropConnection
from ult_actors.sim.oanda.wire import DatetimeFormat, render

#: Queue entry that closes the connection.
CUT: Final = None
#: A stream that falls this far behind is cut, as a slow reader would be.
MAX_QUEUED = 1024


class StreamSlot:
    """One open stream connection."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.queue: deque[dict[str, Any] | None] = deque()
        self.wake = trio.Event()
        self.muted = False
        self.beats = True

    def push(self, item: dict[str, Any] | None) -> None:
        """Queue a line (or ``CUT``); a reader too far behind is cut instead."""
        if len(self.queue) >= MAX_QUEUED and item is not CUT:
            item = CUT
        self.queue.append(item)
        self.wake.set()

    def poke(self) -> None:
        """Wake the writer without queueing (prices moved)."""
        self.wake.set()


def line(obj: dict[str, Any], fmt: DatetimeFormat) -> bytes:
    """One JSON line in the asked time format."""
    return msgspec.json.encode(render(obj, fmt)) + b"\n"


async def transaction_lines(
    slot: StreamSlot,
    *,
    heartbeat_s: float,
    heartbeat: Callable[[], dict[str, Any]],
    fmt: DatetimeFormat,
) -> AsyncIterator[bytes]:
    """The transaction stream of one connection: queued transactions and heartbeats."""
    next_beat = trio.current_time() + heartbeat_s
    while True:
        while slot.queue:
            item = slot.queue.popleft()
            if item is CUT:
                raise DropConnection
            if not slot.muted:
                yield line(item, fmt)
        slot.wake = trio.Event()
        with trio.move_on_at(next_beat):
            await slot.wake.wait()
        if trio.current_time() >= next_beat:
            next_beat += heartbeat_s
            if slot.beats and not slot.muted:
                yield line(heartbeat(), fmt)


async def price_lines(
    slot: StreamSlot,
    *,
    heartbeat_s: float,
    prices: Callable[[], list[dict[str, Any]]],
    heartbeat: Callable[[], dict[str, Any]],
    fmt: DatetimeFormat,
) -> AsyncIterator[bytes]:
    """The pricing stream of one connection: a snapshot, then prices as they move."""
    for price in prices():
        yield line(price, fmt)
    next_beat = trio.current_time() + heartbeat_s
    while True:
        slot.wake = trio.Event()
        with trio.move_on_at(next_beat):
            await slot.wake.wait()
        if CUT in slot.queue:
            raise DropConnection
        if slot.wake.is_set():
            if not slot.muted:
                for price in prices():
                    yield line(price, fmt)
        elif trio.current_time() >= next_beat:
            next_beat += heartbeat_s
            if slot.beats and not slot.muted:
                yield line(heartbeat(), fmt)
