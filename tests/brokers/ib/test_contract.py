"""The IB connector passes the contract batteries against the TWS simulator over TCP."""

from __future__ import annotations

from tests.brokers.contract import ContractBattery
from tests.brokers.contract_orders import OrderTypesBattery


class TestIbContract(ContractBattery):
    """Everything every connector promises, through TWS's socket protocol."""


class TestIbOrderTypes(OrderTypesBattery):
    """Replace as TWS's modify; brackets, OCOs and OTOs as TWS's own linked orders."""
