"""Alpaca Trading API v2: kind, connector, stream, mapping, wire records, errors, settings, fill ledger."""

from ult_actors.brokers.alpaca.kind import KIND

__all__ = ["KIND"]
