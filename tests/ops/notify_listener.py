"""Moved to ``ult_actors.testing.notify``; this name stays until the tests import it from there."""

from ult_actors.testing.notify import NotifyListener, parse

__all__ = ["NotifyListener", "parse"]
