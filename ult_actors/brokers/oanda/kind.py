"""OANDA as a kind the registry lists: settings, environment, connector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ult_actors.brokers.base import BrokerKind, Connector
from ult_actors.brokers.oanda.settings import OandaSettings, oanda_settings_from_env


def connector_factory(name: str, settings: OandaSettings, **kwargs: Any) -> Callable[[], Connector]:
    """A function making one connector per actor incarnation, all sharing one cursor and
    one pacer of new connections (the venue's limit is the account's, not one pool's)."""
    from ult_actors.brokers.http.pacing import ConnectionPacer
    from ult_actors.brokers.oanda.connector import OandaConnector  # httpx only when used
    from ult_actors.brokers.oanda.stream import TransactionCursor

    cursor = TransactionCursor()
    pacer = ConnectionPacer(settings.new_connections_per_s)
    return lambda: OandaConnector(name, settings, cursor=cursor, pacer=pacer, **kwargs)


KIND = BrokerKind(
    "oanda", OandaSettings, oanda_settings_from_env, connector_factory, ("OANDA_API_TOKEN",)
)
