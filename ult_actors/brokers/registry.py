"""The broker kinds the service can run, looked up by the ``kind`` of a config entry.

Each venue package exports one ``KIND`` (``brokers.base.BrokerKind``): its
settings Struct, their environment overrides and its connector factory.
Connector modules are imported when a factory is first called, so a service
that runs only the paper broker never imports httpx-based connectors.
"""

from __future__ import annotations

from typing import Any

from ult_actors.brokers import alpaca, ib, oanda, paper
from ult_actors.brokers.base import BrokerKind
from ult_actors.errors import ConfigError

BROKER_KINDS: dict[str, BrokerKind[Any]] = {
    k.name: k for k in (paper.KIND, alpaca.KIND, oanda.KIND, ib.KIND)
}


def broker_kind(kind: str) -> BrokerKind[Any]:
    """The registered kind, or ``ConfigError`` naming the known ones."""
    try:
        return BROKER_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(BROKER_KINDS))
        raise ConfigError(f"unknown broker kind {kind!r} (known: {known})") from None
