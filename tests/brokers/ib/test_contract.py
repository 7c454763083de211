"""The IB connector passes the contract battery against the TWS simulator over TCP."""

from __future__ import annotations

from tests.brokers.contract import ContractBattery


class TestIbContract(ContractBattery):
    """Everything every connector promises, through TWS's socket protocol."""
