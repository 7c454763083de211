"""The socket's gateway of a cluster instance: the active service's, or a standby's answers.

The instance keeps one socket whatever its role, so ``ult health`` always
reaches it. While standby, health says so and names the active instance;
a ping is answered; every other request is refused with ``ServiceBusy`` naming it (the order
was not taken: send it there, or retry here after a takeover).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import trio

from ult_actors import __version__
from ult_actors.errors import ServiceBusy
from ult_actors.ipc.gateway import Gateway
from ult_actors.messages import (
    ClusterHealth,
    Event,
    EventTopic,
    GetHealth,
    HealthReply,
    HealthSnapshot,
    OkReply,
    Ping,
    Reply,
    Request,
)
from ult_actors.runtime.pubsub import EventBus, Subscription


class RoleGateway:
    """Hands each request to the active service's gateway, or answers as a standby."""

    def __init__(
        self, cluster: Callable[[], ClusterHealth], now_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._cluster = cluster
        self._now_ns = now_ns
        self._started_at = now_ns()
        #: The running service's gateway while this instance is active and serving.
        self.active: Gateway | None = None
        #: Requests the active service is handling, each in its own scope.
        self._in_flight: set[trio.CancelScope] = set()
        # A standby publishes nothing; a subscriber waits for events that never come.
        self._quiet: EventBus[Event] = EventBus()

    async def handle(self, request: Request, peer: Any = None) -> Reply:
        """Answer ``request`` as the active service, or as a standby."""
        if self.active is not None:
            return await self._handle_active(self.active, request, peer)
        if isinstance(request, GetHealth):
            return HealthReply(id=request.id, health=self.standby_health())
        if isinstance(request, Ping):
            return OkReply(id=request.id, detail="pong (standby)")
        cluster = self._cluster()
        active = (
            f"the active one is {cluster.active}"
            if cluster.active
            else "no active instance is known yet"
        )
        if cluster.problem:
            active += f" ({cluster.problem})"
        raise ServiceBusy(
            f"this instance ({cluster.instance}) is a standby of cluster {cluster.name!r}"
            f" and takes no requests; {active}"
        )

    async def _handle_active(self, active: Gateway, request: Request, peer: Any) -> Reply:
        scope = trio.CancelScope()
        self._in_flight.add(scope)
        try:
            with scope:
                return await active.handle(request, peer)
        finally:
            self._in_flight.discard(scope)
        # Cancelled by ``deactivate``: a submit may or may not have left (it was journaled
        # first, so the active instance knows, and a retry with its id is answered there).
        raise ServiceBusy(
            "this instance lost its cluster's lease while handling the request; if it was an"
            " order, ask the active instance for it by its client order id (a retry with the"
            " same id is safe)"
        )

    def activate(self, gateway: Gateway) -> None:
        """Hand requests to ``gateway`` (the service is up and holds the lease)."""
        self.active = gateway

    def deactivate(self) -> None:
        """Stop handing requests to the service; those it is handling are answered busy."""
        self.active = None
        for scope in self._in_flight:
            scope.cancel()

    def subscribe(self, topics: frozenset[EventTopic], capacity: int) -> Subscription[Event]:
        """The active service's events; a standby's subscription stays quiet."""
        if self.active is not None:
            return self.active.subscribe(topics, capacity)
        return self._quiet.subscribe(lambda event: True, capacity=capacity)

    def prepare(self, request: Request) -> Request:
        """``request`` as the active service would handle it (a standby changes nothing)."""
        return self.active.prepare(request) if self.active is not None else request

    def standby_health(self) -> HealthSnapshot:
        """What a standby reports: no actors run; its role and the active instance."""
        return HealthSnapshot(
            actors=[],
            pid=os.getpid(),
            version=__version__,
            started_at=self._started_at,
            taken_at=self._now_ns(),
            cluster=self._cluster(),
        )
