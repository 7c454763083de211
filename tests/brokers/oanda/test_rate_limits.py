"""OANDA's rate limit through the connector: a 429 is ``RateLimited``, told when to come back.

The simulator enforces OANDA's per-connection limit (small here); time is a
MockClock that moves only when the test says.
"""

from __future__ import annotations

import pytest
import trio.testing

from tests.brokers.oanda.harness import connected, running_sim
from ult_actors.errors import RateLimited
from ult_actors.sim.oanda.limits import RateLimits


async def test_a_request_over_the_limit_is_rate_limited_with_the_venues_retry_after(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with (
        running_sim(rate_limits=RateLimits(per_second=2)) as sim,
        connected(sim, stream=False) as (connector, _),  # connect: one request
    ):
        await connector.account()
        with pytest.raises(RateLimited) as limited:
            await connector.account()
        assert limited.value.retry_after == 1.0
        assert sim.state()["rate_limited"] == 1
        mock_clock.jump(limited.value.retry_after)
        assert (await connector.account()).broker == "oanda"  # the same connection goes on
