"""The paper broker: a simulated venue inside the service (kind, connector, venue, account, feed, store, settings)."""

from ult_actors.brokers.paper.kind import KIND

__all__ = ["KIND"]
