"""Real processes: an OCO the service holds at OANDA survives ``kill -9``.

``ult serve`` and ``ult sim oanda`` run as their own processes. OANDA has no
OCO, so the service holds the pair: when one exit fills it cancels the other.
Here the take-profit fills while the service is dead; after the restart the
service sees it and cancels the stop-loss, exactly once, and places nothing
else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.durability.harness import journal_status
from ult_actors.client import Client
from ult_actors.messages import Order
from ult_actors.testing.process import UltProcess

TOKEN = "oco-kill-token-5f2a"
ACCOUNT = "101-001-1357913-001"
PIP = Decimal("0.00001")


@pytest.fixture
def sim_url() -> Iterator[str]:
    env = {"OANDA_API_TOKEN": TOKEN, "OANDA_ACCOUNT_ID": ACCOUNT}
    args = ["sim", "oanda", "--port", "0", "--tick", "0"]
    with UltProcess(args, env=env, ports=True, name="sim") as sim:
        sim.start()
        yield f"http://127.0.0.1:{sim.ports[0]}"


def venue(sim_url: str, path: str) -> Any:
    """One GET of the simulator's v20 API for the account."""
    answer = httpx.get(
        f"{sim_url}/v3/accounts/{ACCOUNT}/{path}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()


def journal_reaches(svc: UltProcess, coid: str, want: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while journal_status(svc.journal, coid) != want:
        assert time.monotonic() < deadline, (
            f"{coid} is {journal_status(svc.journal, coid)}, not {want}:\n{svc.log[-4000:]}"
        )
        time.sleep(0.02)


def order_reaches(client: Client, coid: str, want: str, timeout: float = 30.0) -> Order:
    deadline = time.monotonic() + timeout
    while (order := client.order(coid)).status != want:
        assert time.monotonic() < deadline, f"{coid} is {order.status}, not {want}"
        time.sleep(0.02)
    return order


def test_the_stop_is_canceled_once_after_a_restart_when_the_take_profit_filled_meanwhile(
    sim_url: str,
) -> None:
    env = {"OANDA_API_TOKEN": TOKEN, "OANDA_ACCOUNT_ID": ACCOUNT, "OANDA_BASE_URL": sim_url}
    svc = UltProcess.serve(env=env)
    try:
        svc.start(timeout=60)
        with Client(svc.socket, timeout=30) as client:
            entry = client.submit(
                "EUR_USD", "buy", 1000, broker="oanda", client_order_id="pos-1", wait=True
            )
            assert entry.status == "filled" and entry.avg_fill_price is not None
            price = entry.avg_fill_price
            take_profit, stop_loss = client.oco(
                "EUR_USD", "sell", 1000, broker="oanda", list_id="exit-1",
                take_profit=price + 500 * PIP, stop_loss=price - 500 * PIP,
            )  # fmt: skip
            assert take_profit.leg is not None and take_profit.leg.emulated
            tp, sl = take_profit.client_order_id, stop_loss.client_order_id
            order_reaches(client, tp, "accepted")
            order_reaches(client, sl, "accepted")
        svc.kill9()

        # While the service is dead the price rises through the take-profit.
        moved = httpx.post(f"{sim_url}/_sim/prices", json={"EUR_USD": str(price + 700 * PIP)})
        moved.raise_for_status()
        tp_id = take_profit.id
        assert venue(sim_url, f"orders/{tp_id}")["order"]["state"] == "FILLED"
        assert venue(sim_url, f"orders/{stop_loss.id}")["order"]["state"] == "PENDING"

        svc.start(timeout=60)
        journal_reaches(svc, tp, "filled")
        journal_reaches(svc, sl, "canceled")
        with Client(svc.socket, timeout=30) as client:
            assert client.order(sl).status == "canceled"
            assert [p.qty for p in client.positions("oanda") if p.symbol == "EUR_USD"] in ([], [0])
        svc.stop()
    finally:
        svc.cleanup()

    # From the venue's side: the stop canceled by one cancel, and no order placed besides
    # the position's entry and the two exits.
    assert venue(sim_url, f"orders/{stop_loss.id}")["order"]["state"] == "CANCELLED"
    since = venue(sim_url, "transactions/sinceid?id=0")["transactions"]
    cancels = [t for t in since if t["type"] == "ORDER_CANCEL" and t.get("orderID") == stop_loss.id]
    assert len(cancels) == 1, cancels
    created = [t for t in since if t["type"].endswith("_ORDER") and t["type"] != "MARKET_ORDER"]
    assert sorted(t["type"] for t in created) == ["LIMIT_ORDER", "STOP_ORDER"]
    assert httpx.get(f"{sim_url}/_sim/state").json()["orders"] == 3
