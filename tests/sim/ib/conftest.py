"""Fixtures of the TWS simulator's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.brokers.ib.harness import running_sim
from ult_actors.sim.ib import TwsSimulator


@pytest.fixture
async def sim() -> AsyncIterator[TwsSimulator]:
    """A simulator on an ephemeral loopback port, without market ticks."""
    async with running_sim() as server:
        yield server
