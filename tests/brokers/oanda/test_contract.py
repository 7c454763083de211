"""The connector contract battery, run against the OANDA simulator over real sockets."""

from __future__ import annotations

from tests.brokers.contract import ContractBattery
from tests.brokers.contract_orders import OrderTypesBattery


class TestOandaContract(ContractBattery):
    """Every promise of the connector protocol, kept by ``OandaConnector``."""


class TestOandaOrderTypes(OrderTypesBattery):
    """Replace and the native bracket, kept by ``OandaConnector`` at the simulator."""
