"""Interactive Brokers: the TWS / IB Gateway socket protocol, natively on trio.

Modules: ``protocol`` (framing, handshake), ``fields`` (typed fields),
``wire`` (message records), ``encode`` / ``decode`` (one function per
message), ``mapping`` (our orders to IB's), ``orders`` (tracking what TWS
reports), ``order_ids`` (the id sequence reconnects share), ``errors`` (TWS
codes), ``settings`` and ``connector``. Supported server versions: 157 to
178, the fields-only protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.order_ids import OrderIdSequence
from ult_actors.brokers.ib.settings import IbSettings, ib_settings_from_env


def connector_factory(name: str, settings: IbSettings, **kwargs: Any) -> Callable[[], IbConnector]:
    """One connector per actor incarnation, all drawing order ids from one sequence.

    A reconnect must never hand out an id its predecessor used, even when
    TWS's nextValidId lags behind (see ``order_ids``).
    """
    order_ids = OrderIdSequence()

    def make() -> IbConnector:
        return IbConnector(name, settings, order_ids=order_ids, **kwargs)

    return make


__all__ = [
    "IbConnector",
    "IbSettings",
    "OrderIdSequence",
    "connector_factory",
    "ib_settings_from_env",
]
