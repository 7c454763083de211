"""OANDA as a kind the registry lists: settings, environment, connector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ult_actors.brokers.base import BrokerKind, Connector
from ult_actors.brokers.oanda.settings import OandaSettings, oanda_settings_from_env


def connector_factory(name: str, settings: OandaSettings, **kwargs: Any) -> Callable[[], Connector]:
    """A function making one connector per actor incarnation, all sharing one cursor."""
    from ult_actors.brokers.oanda.connector import OandaConnector  # httpx only when used
    from ult_actors.brokers.oanda.stream import TransactionCursor

    cursor = TransactionCursor()
    return lambda: OandaConnector(name, settings, cursor=cursor, **kwargs)


KIND = BrokerKind(
    "oanda", OandaSettings, oanda_settings_from_env, connector_factory, ("OANDA_API_TOKEN",)
)
