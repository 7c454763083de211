"""Real processes: a bracket at Alpaca (native) through ``ult serve``; its stop triggers.

``ult sim alpaca`` and ``ult serve`` run as their own processes. The bracket's
entry fills, the price falls through the stop-loss: Alpaca fills the stop and
cancels the take-profit itself, and the journal shows it (``ult orders --json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ult_actors.testing.process import UltProcess, run_ult, short_dir

KEY, SECRET = "bracket-key", "bracket-secret"


@pytest.fixture
def sim_port() -> Iterator[int]:
    with short_dir("ult-br") as home:
        args = ["sim", "alpaca", "--port", "0", "--key", KEY, "--secret", SECRET,
                "--fill-delay", "0.01"]  # fmt: skip
        with UltProcess(args, home=home, ports=True, clean=True, name="sim") as sim:
            sim.start(timeout=60)
            yield sim.ports[0]


def journal_orders(svc: UltProcess) -> dict[str, dict[str, Any]]:
    done = run_ult("orders", "--json", "--socket", str(svc.socket))
    assert done.returncode == 0, done.stdout + done.stderr
    return {o["client_order_id"]: o for o in json.loads(done.stdout)["orders"]}


def wait_statuses(svc: UltProcess, want: dict[str, str], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        orders = journal_orders(svc)
        now = {coid: orders[coid]["status"] for coid in want}
        if now == want:
            return orders
        assert time.monotonic() < deadline, f"{now}, not {want}"
        time.sleep(0.05)


def test_a_bracket_whose_stop_triggers_cancels_its_take_profit(sim_port: int) -> None:
    url = f"http://127.0.0.1:{sim_port}"
    svc = UltProcess.serve(
        env={
            "ALPACA_API_KEY": KEY,
            "ALPACA_API_SECRET": SECRET,
            "ALPACA_BASE_URL": url,
            "ALPACA_STREAM_URL": f"ws://127.0.0.1:{sim_port}/stream",
            "ENABLE_PAPER_TRADING": "false",
            "DEFAULT_BROKER": "alpaca",
        }
    )
    try:
        svc.start(timeout=60)
        placed = run_ult(
            "submit", "AAPL", "buy", "10", "--take-profit", "200", "--stop-loss", "180",
            "--list-id", "br-stop", "--json", "--socket", str(svc.socket),
        )  # fmt: skip
        assert placed.returncode == 0, placed.stdout + placed.stderr
        entry, take, stop = (o["client_order_id"] for o in json.loads(placed.stdout)["orders"])
        # The entry fills at 190; the exits go to the market.
        wait_statuses(svc, {entry: "filled", take: "accepted", stop: "accepted"})

        httpx.post(f"{url}/_sim/prices", json={"AAPL": "179.50"}).raise_for_status()

        orders = wait_statuses(svc, {entry: "filled", take: "canceled", stop: "filled"})
        assert orders[stop]["filled_qty"] == "10" and orders[take]["filled_qty"] == "0"
        assert {orders[c]["leg"]["list_id"] for c in (entry, take, stop)} == {"br-stop"}
        # Native: Alpaca canceled the take-profit; the service held nothing.
        assert not any(orders[c]["leg"].get("emulated") for c in (entry, take, stop))
        done = run_ult("positions", "--json", "--socket", str(svc.socket))
        held = [p for p in json.loads(done.stdout)["positions"] if p["symbol"] == "AAPL"]
        assert held == []
    finally:
        svc.cleanup()
    state = httpx.get(f"{url}/_sim/state").json()
    assert state["orders"] == 3, state
