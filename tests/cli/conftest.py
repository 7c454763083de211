"""Fixtures of the CLI tests: ``ult serve`` in front of ``ult sim alpaca``, both real processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from ult_actors.testing.process import UltProcess, run_ult, short_dir

SIM_KEY = "PKCLITEST0000000001"
SIM_SECRET = "cli-sim-secret-0123456789"


class AlpacaService:
    """``ult serve`` routing to ``ult sim alpaca``; ``ult(...)`` runs a client command on it."""

    def __init__(self, service: UltProcess, sim: UltProcess) -> None:
        self.service = service
        self.sim = sim

    def ult(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_ult(*args, "--socket", str(self.service.socket))


@pytest.fixture(scope="module")
def alpaca() -> Iterator[AlpacaService]:
    with short_dir("ult-sim") as home:
        sim = UltProcess(
            ["sim", "alpaca", "--port", "0", "--key", SIM_KEY, "--secret", SIM_SECRET,
             "--fill-delay", "0.01"],
            home=home, ports=True, clean=True, name="sim",
        )  # fmt: skip
        service: UltProcess | None = None
        try:
            sim.start(timeout=60)
            port = sim.ports[0]
            service = UltProcess.serve(
                env={
                    "ALPACA_API_KEY": SIM_KEY,
                    "ALPACA_API_SECRET": SIM_SECRET,
                    "ALPACA_BASE_URL": f"http://127.0.0.1:{port}",
                    "ALPACA_STREAM_URL": f"ws://127.0.0.1:{port}/stream",
                    "ENABLE_PAPER_TRADING": "false",
                    "DEFAULT_BROKER": "alpaca",
                }
            )
            service.start(timeout=60)
            yield AlpacaService(service, sim)
        finally:
            if service is not None:
                service.cleanup()
            sim.cleanup()
