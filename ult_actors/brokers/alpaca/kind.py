"""Alpaca as a kind the registry lists: settings, environment, connector."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ult_actors.brokers.alpaca.settings import AlpacaSettings, alpaca_settings_from_env
from ult_actors.brokers.base import BrokerKind, Connector


def connector_factory(
    name: str, settings: AlpacaSettings, **kwargs: Any
) -> Callable[[], Connector]:
    """One connector per actor incarnation, all sharing one fill ledger.

    A restarted broker actor's connector must deliver what no earlier
    incarnation delivered, fills whose application crashed included, and
    only that (see ``ledger``).
    """
    from ult_actors.brokers.alpaca.connector import AlpacaConnector  # httpx only when used
    from ult_actors.brokers.alpaca.ledger import FillLedger

    now_ns: Callable[[], int] = kwargs.get("now_ns", time.time_ns)
    ledger = FillLedger(watch_from_ns=now_ns())
    return lambda: AlpacaConnector(name, settings, ledger=ledger, **kwargs)


KIND = BrokerKind(
    "alpaca", AlpacaSettings, alpaca_settings_from_env, connector_factory, ("ALPACA_API_KEY",)
)
