"""Publish/subscribe of events with a bounded queue per subscriber.

Publishing never blocks and never slows the publisher: a subscriber whose
queue is full is dropped, told why through ``Subscription.dropped_reason``,
and its stream ends. This is the back-pressure rule for events (commands use
bounded mailboxes that do block; see ``mailbox.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import trio

E = TypeVar("E")


class Subscription(Generic[E]):
    """One subscriber's view of a bus: iterate it to receive events."""

    def __init__(self, bus: EventBus[E], accepts: Callable[[E], bool], capacity: int) -> None:
        self._bus = bus
        self.accepts = accepts
        self.capacity = capacity
        self._send, self._receive = trio.open_memory_channel[E](capacity)
        #: Why the bus dropped this subscriber, or None while it is live.
        self.dropped_reason: str | None = None

    def _offer(self, event: E) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped_reason = (
                f"subscriber fell behind: {self.capacity} events queued and unread"
            )
            self._bus._remove(self)
            self._send.close()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._bus._remove(self)

    @property
    def queued(self) -> int:
        """Events waiting to be read."""
        return self._receive.statistics().current_buffer_used

    async def __aiter__(self) -> AsyncIterator[E]:
        async for event in self._receive:
            yield event

    async def receive(self) -> E:
        """The next event; raises ``trio.EndOfChannel`` once dropped or closed."""
        return await self._receive.receive()

    def drain(self) -> list[E]:
        """Every event waiting to be read, without waiting for more."""
        out: list[E] = []
        while True:
            try:
                out.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return out

    def close(self) -> None:
        """Stop receiving; safe to call twice."""
        self._bus._remove(self)
        self._send.close()


class EventBus(Generic[E]):
    """Fan-out of events to any number of bounded subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Subscription[E]] = []
        self.published = 0

    def subscribe(
        self, accepts: Callable[[E], bool] = lambda _e: True, capacity: int = 1024
    ) -> Subscription[E]:
        """A new subscription to events for which ``accepts`` is true."""
        sub = Subscription(self, accepts, capacity)
        self._subscribers.append(sub)
        return sub

    def publish(self, event: E) -> None:
        """Offer ``event`` to every subscriber that accepts it; never blocks."""
        self.published += 1
        for sub in tuple(self._subscribers):
            if sub.accepts(event):
                sub._offer(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _remove(self, sub: Subscription[E]) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
