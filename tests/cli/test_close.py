"""``ult close`` and ``ult flatten`` against the real service over its socket (paper broker)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from ult_actors.client import AsyncClient, Client
from ult_actors.testing.process import UltProcess, run_ult


@pytest.fixture(scope="module")
def service() -> Iterator[UltProcess]:
    svc = UltProcess.serve(env={}).start()
    yield svc
    svc.cleanup()


def ult(svc: UltProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_ult(*args, "--socket", str(svc.socket))


def held(svc: UltProcess) -> dict[str, str]:
    positions = json.loads(ult(svc, "positions", "--json").stdout)["positions"]
    return {p["symbol"]: p["qty"] for p in positions if p["qty"] != "0"}


def test_ult_close_closes_one_position_and_lists_the_closing_order(
    service: UltProcess,
) -> None:
    assert ult(service, "submit", "SPY", "buy", "4", "--wait").returncode == 0
    assert held(service).get("SPY") == "4"
    closed = ult(service, "close", "SPY", "--json")
    assert closed.returncode == 0, closed.stderr
    (order,) = json.loads(closed.stdout)["orders"]
    assert (order["symbol"], order["side"], order["qty"], order["status"]) == (
        "SPY", "sell", "4", "filled"
    )  # fmt: skip
    assert "SPY" not in held(service)
    journal = json.loads(ult(service, "orders", "--json").stdout)["orders"]
    assert order["client_order_id"] in [o["client_order_id"] for o in journal]
    again = ult(service, "close", "SPY")
    assert again.returncode == 1 and "no position" in again.stderr


def test_ult_flatten_cancels_orders_and_closes_positions_even_halted(
    service: UltProcess,
) -> None:
    for symbol in ("QQQ", "IWM"):
        assert ult(service, "submit", symbol, "buy", "2", "--wait").returncode == 0
    resting = ult(
        service, "submit", "QQQ", "buy", "1", "--type", "limit", "--limit-price", "1",
        "--tif", "gtc", "--client-order-id", "cli-flat-rest",
    )  # fmt: skip
    assert resting.returncode == 0, resting.stderr
    assert ult(service, "kill-switch", "on").returncode == 0
    try:
        table = ult(service, "flatten")
        assert table.returncode == 0, table.stderr
        assert "QQQ" in table.stdout and "IWM" in table.stdout
        assert held(service) == {}
        assert json.loads(ult(service, "orders", "--open", "--json").stdout)["orders"] == []
    finally:
        ult(service, "kill-switch", "off")


def test_the_client_library_closes_and_flattens(service: UltProcess) -> None:
    with Client(service.socket) as c:
        c.submit("DIA", "buy", 3, wait=True)
        (closing,) = c.close_position("DIA", broker="paper")
        assert (closing.symbol, closing.side, closing.qty) == ("DIA", "sell", 3)
        c.submit("GLD", "buy", 1, wait=True)
        assert [o.symbol for o in c.flatten()] == ["GLD"]
        assert [p for p in c.positions() if p.qty] == []


async def test_the_async_client_closes_and_flattens(service: UltProcess) -> None:
    async with AsyncClient(service.socket, timeout=20) as c:
        await c.submit("TLT", "buy", 6, wait=True)
        (closing,) = await c.close_position("TLT")
        assert (closing.broker, closing.symbol, closing.side, closing.qty) == (
            "paper", "TLT", "sell", 6
        )  # fmt: skip
        await c.submit("XOM", "buy", 2, wait=True)
        assert [o.symbol for o in await c.flatten(broker="paper")] == ["XOM"]
        assert [p for p in await c.positions() if p.qty] == []
