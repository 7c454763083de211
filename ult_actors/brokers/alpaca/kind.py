"""Alpaca as a kind the registry lists: settings, environment, connector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ult_actors.brokers.alpaca.settings import AlpacaSettings, alpaca_settings_from_env
from ult_actors.brokers.base import BrokerKind, Connector


def _factory(name: str, settings: AlpacaSettings, **kwargs: Any) -> Callable[[], Connector]:
    from ult_actors.brokers.alpaca.connector import AlpacaConnector  # httpx only when used

    return lambda: AlpacaConnector(name, settings, **kwargs)


KIND = BrokerKind("alpaca", AlpacaSettings, alpaca_settings_from_env, _factory, ("ALPACA_API_KEY",))
