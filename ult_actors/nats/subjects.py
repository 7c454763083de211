"""The NATS subjects and stream of one cluster, and which subject an event goes to.

Commands: ``ult.<cluster>.cmd``. Events: ``ult.<cluster>.events.<subject>``,
each event published once: an order update carrying a fill on ``fills``,
any other order update on ``orders``, then ``health``, ``positions`` (drift,
account resets) and ``risk`` (trading state). A topic a client follows maps
to the subjects that carry it: ``orders`` is ``orders`` and ``fills`` (an
update with a fill is an order update too), ``fills`` is ``fills``.
"""

from __future__ import annotations

from ult_actors.messages import (
    AccountReset,
    ActorHealthChanged,
    ConnectionStateChanged,
    Event,
    EventTopic,
    OrderUpdate,
    PositionDrift,
    TradingStateChanged,
)


class Subjects:
    """The subjects of cluster ``cluster``."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.commands = f"ult.{cluster}.cmd"
        self.events_prefix = f"ult.{cluster}.events."
        self.all_events = self.events_prefix + ">"
        #: JetStream stream names may not hold dots.
        self.stream = f"ULT_{cluster}_EVENTS"

    def of_event(self, event: Event) -> str:
        """The subject ``event`` is published on."""
        return self.events_prefix + _leaf(event)

    def of_topics(self, topics: frozenset[EventTopic]) -> frozenset[str]:
        """The subjects that carry the events of ``topics``."""
        leaves: set[str] = set()
        for topic in topics:
            leaves.update(("orders", "fills") if topic == "orders" else (topic,))
        return frozenset(self.events_prefix + leaf for leaf in leaves)


def _leaf(event: Event) -> str:
    match event:
        case OrderUpdate():
            return "fills" if event.fill is not None else "orders"
        case ActorHealthChanged() | ConnectionStateChanged():
            return "health"
        case PositionDrift() | AccountReset():
            return "positions"
        case TradingStateChanged():
            return "risk"


def wanted(event: Event, topics: frozenset[EventTopic]) -> bool:
    """Whether a client following ``topics`` wants ``event`` (as the local socket decides)."""
    if isinstance(event, OrderUpdate):
        if "fills" in topics and event.fill is not None:
            return True
        return "orders" in topics and not event.fill_only
    return True  # its subject already matched a topic followed
