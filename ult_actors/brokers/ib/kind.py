"""Interactive Brokers as a kind the registry lists: settings, environment, connector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ult_actors.brokers.base import BrokerKind, Connector
from ult_actors.brokers.ib.settings import IbSettings, ib_settings_from_env


def connector_factory(name: str, settings: IbSettings, **kwargs: Any) -> Callable[[], Connector]:
    """One connector per actor incarnation, all drawing order ids from one sequence
    and sharing one ledger of delivered executions.

    A reconnect must never hand out an id its predecessor used, even when
    TWS's nextValidId lags behind (see ``order_ids``), and must deliver the
    fills its predecessors missed, only those (see ``ledger``).
    """
    from ult_actors.brokers.ib.connector import IbConnector
    from ult_actors.brokers.ib.ledger import ExecutionLedger
    from ult_actors.brokers.ib.order_ids import OrderIdSequence

    order_ids = OrderIdSequence()
    ledger = ExecutionLedger()
    return lambda: IbConnector(name, settings, order_ids=order_ids, ledger=ledger, **kwargs)


KIND = BrokerKind("ib", IbSettings, ib_settings_from_env, connector_factory, ("IB_PORT",))
