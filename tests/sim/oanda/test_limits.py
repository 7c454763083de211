"""OANDA's rate limits in the simulator: requests per connection and new connections per second.

Time is a MockClock that moves only when the test says, so which requests
share a second is exact.
"""

from __future__ import annotations

import httpx
import trio.testing

from tests.sim.oanda.test_server import ACCOUNT, TOKEN, served
from ult_actors.sim.oanda.limits import RateLimits


def client_for(base_url: str) -> httpx.AsyncClient:
    """A client of its own: its first request opens a new connection."""
    return httpx.AsyncClient(
        base_url=f"{base_url}/v3/accounts/{ACCOUNT}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


async def test_requests_over_the_per_connection_limit_get_429_until_the_second_is_over(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with served(rate_limits=RateLimits(per_second=3)) as (sim, client):
        assert [(await client.get("/summary")).status_code for _ in range(3)] == [200] * 3
        over = await client.get("/summary")
        assert over.status_code == 429
        assert over.json() == {"errorMessage": "Too many requests per second on this connection"}
        assert over.headers["Retry-After"] == "1"
        # The limit is per connection: another one has its own budget.
        async with client_for(sim.base_url) as other:
            assert (await other.get("/summary")).status_code == 200
        mock_clock.jump(1.0)
        assert (await client.get("/summary")).status_code == 200
        assert sim.state()["rate_limited"] == 1


async def test_a_new_connection_over_the_limit_is_refused_and_closed(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with served(rate_limits=RateLimits(new_connections_per_second=2)) as (sim, first):
        assert (await first.get("/summary")).status_code == 200
        async with client_for(sim.base_url) as second, client_for(sim.base_url) as third:
            assert (await second.get("/summary")).status_code == 200
            refused = await third.get("/summary")
            assert refused.status_code == 429
            assert refused.headers["Connection"] == "close"
            assert refused.json() == {"errorMessage": "Too many new connections per second"}
            # Connections already open are not new: they go on.
            assert (await first.get("/summary")).status_code == 200
            mock_clock.jump(1.0)
            assert (await third.get("/summary")).status_code == 200  # on a new connection


async def test_limits_and_issue_18_faults_are_set_through_the_admin_endpoints() -> None:
    async with served() as (sim, client):
        admin = sim.base_url + "/_sim"
        body = {"per_second": 100, "new_connections_per_second": 2}
        assert (await client.post(admin + "/rate-limit", json=body)).json() == body
        assert sim.limiter.limits == RateLimits(**body)
        bad = await client.post(admin + "/rate-limit", json={"per_second": -1})
        assert bad.status_code == 400 and "negative" in bad.json()["errorMessage"]
        assert sim.limiter.limits == RateLimits(**body)  # a bad request changes nothing
        faults = [
            {"kind": "silent"},
            {"kind": "drop_events", "events": ["ORDER_FILL"], "probability": 0.5, "count": 3},
        ]
        armed = (await client.post(admin + "/faults", json=faults)).json()["armed"]
        assert [(f["kind"], f["events"]) for f in armed] == [("drop_events", ["ORDER_FILL"])]
        assert sim.faults.fired == {"silent": 1}  # acted on the open streams, used up
