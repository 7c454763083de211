"""The connector contract battery, run against the Alpaca simulator over real sockets."""

from __future__ import annotations

from tests.brokers.contract import ContractBattery


class TestAlpacaContract(ContractBattery):
    """Every promise of the connector protocol, kept by ``AlpacaConnector``."""
