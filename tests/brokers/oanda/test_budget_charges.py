"""Every request OANDA gets is paid from the account's budget, and new connections are paced.

The simulator enforces OANDA's limits (small here, so a test reaches them);
the connector's own requests (lookups, listings, account reads the broker
actor did not ask for one by one) must stay under them by waiting for the
budget, never by meeting a 429. Time is an autojump clock.
"""

from __future__ import annotations

import trio
import trio.testing

from tests.brokers.oanda.harness import connected, running_sim
from ult_actors.brokers.budget import RateBudget, charged_as
from ult_actors.brokers.oanda.settings import OandaSettings
from ult_actors.sim.oanda.limits import RateLimits


async def test_a_burst_of_connector_requests_waits_for_the_budget_and_meets_no_429(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # At most 1 + 2 requests in any second from the budget; the venue allows 4 (on one
    # connection: the pool keeps one here, so the venue's count is the account's).
    budget = RateBudget("oanda", rate_per_s=2.0, burst=1, query_reserve=0)
    async with (
        running_sim(rate_limits=RateLimits(per_second=4)) as sim,
        connected(sim, stream=False, max_connections=1) as (connector, _),
    ):
        connector.use_budget(budget)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(connector.account)
        assert sim.state()["rate_limited"] == 0
        # Ten requests from a bucket of one at 2/s: the last waits 4.5 s for its token.
        assert trio.current_time() - started >= 4.5


async def test_a_commands_prepaid_token_pays_its_first_request_and_the_rest_are_charged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = RateBudget("oanda", rate_per_s=0.001, burst=3, query_reserve=0)
    async with running_sim() as sim, connected(sim, stream=False) as (connector, _):
        connector.use_budget(budget)
        with charged_as("order"):
            await budget.prepay("order")  # what the broker actor does for a command
            await connector.account()
            assert budget.health().used == 1  # the request used the prepaid token
            await connector.account()  # a second request of the same command
            assert budget.health().used == 2


async def test_new_connections_are_opened_at_most_two_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        running_sim(rate_limits=RateLimits(new_connections_per_second=2)) as sim,
        connected(
            sim, stream=False, max_connections=6,
            new_connections_per_s=OandaSettings().new_connections_per_s,  # the default pace
        ) as (connector, _),  # fmt: skip
    ):
        async with trio.open_nursery() as nursery:
            for _ in range(6):  # all at once: each needs a connection of its own
                nursery.start_soon(connector.account)
        assert sim.state()["rate_limited"] == 0
