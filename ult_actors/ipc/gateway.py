"""What the IPC server needs from the service: answer a request, open an event subscription.

``ult_actors.actors.gateway.ServiceGateway`` is the real one; tests may pass
anything with the same two methods.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

from ult_actors.messages import Event, EventTopic, Reply, Request
from ult_actors.runtime.pubsub import Subscription


class Gateway(Protocol):
    """The service as the socket sees it."""

    async def handle(self, request: Request, peer: Any = None) -> Reply:
        """Answer one request; failures raise the matching ``UltError``."""
        ...

    def subscribe(self, topics: frozenset[EventTopic], capacity: int) -> Subscription[Event]:
        """A bounded subscription to events of these topics."""
        ...

    def prepare(self, request: Request) -> Request:
        """The request as it will be handled (a submit gets its client order id), so the
        server's log line for it names the order. A submit that has one is not asked."""
        ...


@runtime_checkable
class BeginsAnswers(Protocol):
    """A gateway that answers by a plain call what needs no wait (``ServiceGateway``)."""

    def begin(self, request: Request, peer: Any = None) -> Reply | Awaitable[Reply]:
        """``handle``'s reply when nothing on its way waits, else the coroutine of the
        rest (awaited at once); failures raise as ``handle``'s do."""
        ...
