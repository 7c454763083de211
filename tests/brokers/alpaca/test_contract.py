"""The connector contract batteries, run against the Alpaca simulator over real sockets."""

from __future__ import annotations

from tests.brokers.contract import ContractBattery
from tests.brokers.contract_orders import OrderTypesBattery


class TestAlpacaContract(ContractBattery):
    """Every promise of the connector protocol, kept by ``AlpacaConnector``."""


class TestAlpacaOrderTypes(OrderTypesBattery):
    """Replace and Alpaca's native bracket / oco / oto, kept by ``AlpacaConnector``."""
