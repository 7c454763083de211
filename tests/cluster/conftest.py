"""The cluster tests' parts: the Alpaca simulator (its own process) both instances trade at,
and ``ult serve`` instances of one cluster on one PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ult_actors.testing.process import UltProcess, short_dir

KEY, SECRET = "cluster-key", "cluster-secret"
AUTH = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}


@dataclass
class AlpacaSim:
    """The simulator, and what ``ult serve`` needs in its environment to trade there."""

    url: str
    env: dict[str, str]

    def submits(self) -> int:
        """Order creations the simulator was asked for, ever."""
        return int(httpx.get(f"{self.url}/_sim/state", timeout=10).json()["submits"])

    def cancel(self, order_id: str) -> None:
        """Cancel an order at the simulator directly, as a person on the broker's site would."""
        httpx.delete(
            f"{self.url}/v2/orders/{order_id}", headers=AUTH, timeout=10
        ).raise_for_status()

    def client_order_ids(self) -> list[str]:
        """The client order id of every order the simulator holds (one per order created)."""
        listed = httpx.get(
            f"{self.url}/v2/orders",
            params={"status": "all", "limit": 500},
            headers=AUTH,
            timeout=10,
        )
        listed.raise_for_status()
        return [o["client_order_id"] for o in listed.json()]


@pytest.fixture
def alpaca_sim() -> Iterator[AlpacaSim]:
    with short_dir("ult-sim") as home:
        sim = UltProcess(
            ["sim", "alpaca", "--port", "0", "--key", KEY, "--secret", SECRET, "--seed", "20"],
            home=home, ports=True, clean=True, name="sim",
        )  # fmt: skip
        sim.start(timeout=60)
        port = sim.ports[0]
        env = {
            "ALPACA_API_KEY": KEY,
            "ALPACA_API_SECRET": SECRET,
            "ALPACA_BASE_URL": f"http://127.0.0.1:{port}",
            "ALPACA_STREAM_URL": f"ws://127.0.0.1:{port}/stream",
            "ENABLE_PAPER_TRADING": "false",
            "DEFAULT_BROKER": "alpaca",
        }
        try:
            yield AlpacaSim(url=f"http://127.0.0.1:{port}", env=env)
        finally:
            sim.cleanup()
