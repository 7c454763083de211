"""Setup shared by the IB tests: a running simulator and connector settings.

The ``sim`` fixture is exported as ``sim_fixture`` so that a test module
importing it does not shadow the name its tests take as a parameter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from ult_actors.brokers.ib import IbSettings
from ult_actors.sim.ib import TwsSimulator

BOUND = 10  # seconds any single step may take before the test fails


@pytest.fixture(name="sim")
async def sim_fixture() -> AsyncIterator[TwsSimulator]:
    """A simulator on an ephemeral loopback port, without market ticks."""
    server = TwsSimulator(tick_interval_s=None)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


def settings(port: int, **overrides: Any) -> IbSettings:
    """Connector settings for the simulator at ``port``: short timeouts, no client-id retries."""
    base: dict[str, Any] = {
        "port": port,
        "ack_timeout_s": 5.0,
        "request_timeout_s": 5.0,
        "client_id_in_use_retries": 0,
    }
    return IbSettings(**{**base, **overrides})
