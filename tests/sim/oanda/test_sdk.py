"""oandapyV20 (OANDA's community SDK) against the OANDA simulator: position close and transactions.

oandapyV20 builds each endpoint's method and path itself, so these calls
fail here as they fail for a user if the simulator's routes differ (in the
``test`` extra, with the requests and six it imports).
"""

from __future__ import annotations

from typing import Any

import oandapyV20.endpoints.orders as orders
import oandapyV20.endpoints.positions as positions
import oandapyV20.endpoints.transactions as transactions
import pytest
import trio
from oandapyV20 import API
from oandapyV20 import oandapyV20 as sdk

from tests.brokers.oanda.harness import ACCOUNT, TOKEN, running_sim


def _close_and_page() -> dict[str, Any]:
    api = API(access_token=TOKEN, environment="sim")
    body = {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "1000"}}
    api.request(orders.OrderCreate(ACCOUNT, body))
    closed = api.request(positions.PositionClose(ACCOUNT, "EUR_USD", {"longUnits": "ALL"}))
    listed = api.request(transactions.TransactionList(ACCOUNT, params={"pageSize": 2}))
    first, last = listed["pages"][-1].split("from=")[1].split("&to=")
    page = api.request(transactions.TransactionIDRange(ACCOUNT, params={"from": first, "to": last}))
    still = api.request(positions.OpenPositions(ACCOUNT))
    return {"closed": closed, "listed": listed, "page": page, "open": still["positions"]}


async def test_oandapyv20_closes_a_position_and_pages_through_transactions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_sim() as sim:
        monkeypatch.setitem(
            sdk.TRADING_ENVIRONMENTS, "sim", {"api": sim.base_url, "stream": sim.base_url}
        )
        with trio.fail_after(20):
            seen = await trio.to_thread.run_sync(_close_and_page)
    fill = seen["closed"]["longOrderFillTransaction"]
    assert fill["units"] == "-1000" and fill["reason"] == "MARKET_ORDER_POSITION_CLOSEOUT"
    assert seen["open"] == []
    assert seen["listed"]["count"] == 6 and len(seen["listed"]["pages"]) == 3
    assert [t["id"] for t in seen["page"]["transactions"]] == ["5", "6"]
