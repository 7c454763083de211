"""The NATS side's state for ``ult health``: connected or not since when, the last error, and
the events not yet in JetStream.

nats-py's callbacks write it on the loop thread, the serving task on trio's;
health reads it on trio's. Each change is one attribute assignment of a
tuple, so a reader never sees half of one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from ult_actors.messages import NatsHealth
from ult_actors.secrets import MASK, masked_url

if TYPE_CHECKING:
    from ult_actors.nats.events import EventPublisher

LinkState = Literal["connecting", "connected", "reconnecting"]


class NatsStatus:
    """One service's NATS connection as health shows it; never holds a credential."""

    def __init__(self, url: str, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.url = masked_url(url)
        self._password = urlsplit(url).password
        self._now_ns = now_ns
        self._state: tuple[LinkState, int] = ("connecting", now_ns())
        self._error: tuple[str, int] = ("", 0)
        #: The running event publisher (its backlog and counts); None before it runs.
        self.publisher: EventPublisher | None = None

    @property
    def state(self) -> LinkState:
        """The connection's state now."""
        return self._state[0]

    def entered(self, state: LinkState) -> None:
        """The connection is now ``state`` (from either thread)."""
        if state != self._state[0]:
            self._state = (state, self._now_ns())

    def failed(self, exc: BaseException) -> str:
        """NATS or the connection reported ``exc`` (from either thread); its text as shown."""
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        if self._password:  # an error may quote the URL it was given
            text = text.replace(self._password, MASK)
        self._error = (text, self._now_ns())
        return text

    def health(self) -> NatsHealth:
        """The connection as ``ult health`` shows it."""
        state, since = self._state
        error, error_at = self._error
        publisher = self.publisher
        return NatsHealth(
            url=self.url,
            state=state,
            since=since,
            last_error=error,
            last_error_at=error_at,
            publish_backlog=publisher.backlog() if publisher is not None else 0,
            published=publisher.published if publisher is not None else 0,
            fell_behind=publisher.fell_behind if publisher is not None else 0,
        )
