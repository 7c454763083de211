"""The connector contract battery, run against the OANDA simulator over real sockets."""

from __future__ import annotations

from tests.brokers.contract import ContractBattery


class TestOandaContract(ContractBattery):
    """Every promise of the connector protocol, kept by ``OandaConnector``."""
