"""The paper broker passes the contract battery, matched inline and with latency."""

from __future__ import annotations

from tests.brokers.contract import ContractBattery
from tests.brokers.contract_orders import OrderTypesBattery


class TestPaperContract(ContractBattery):
    """Everything every connector promises, on paper."""


class TestPaperOrderTypes(OrderTypesBattery):
    """Replace and native order lists, on paper."""
