"""OANDA v20: kind, connector, stream, mapping, wire records, errors, settings."""

from ult_actors.brokers.oanda.kind import KIND

__all__ = ["KIND"]
