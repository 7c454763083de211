"""The paper broker passes the contract battery, matched inline and with latency."""

from __future__ import annotations

from tests.brokers.contract import ContractBattery


class TestPaperContract(ContractBattery):
    """Everything every connector promises, on paper."""
