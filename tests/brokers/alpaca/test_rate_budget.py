"""The account's request budget at Alpaca keeps to what the venue says is left of its minute.

Alpaca counts every request of a key per minute, whoever sent it: a service
restarted after ``kill -9`` (or a second process on the same key) finds the
minute partly used. The budget learns what is left from the replies'
``X-RateLimit-*`` headers, so a fresh service's burst never reaches a 429.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import trio

from tests.brokers.alpaca.harness import (
    KEY,
    SECRET,
    clock_standing_in_this_minute,
    running_sim,
    settings_for,
)
from tests.brokers.harness import connected_connector
from ult_actors.brokers.alpaca.connector import AlpacaConnector
from ult_actors.brokers.budget import RateBudget, RequestClass, budget_for, charged_as
from ult_actors.errors import RateLimited, UltError
from ult_actors.messages import Order, OrderRequest


def resting_buy(coid: str) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL",
        side="buy",
        qty=Decimal("1"),
        type="limit",
        limit_price=Decimal("150.00"),
        client_order_id=coid,
    )


def fresh_connector(port: int, budget: RateBudget, now_ns: Callable[[], int]) -> AlpacaConnector:
    """A new process's connector: its own budget, which has not heard Alpaca yet."""
    connector = AlpacaConnector("alpaca", settings_for(port), now_ns=now_ns, rng=random.Random(3))
    connector.use_budget(budget)
    return connector


async def as_the_broker_actor(
    budget: RateBudget, kind: RequestClass, command: Any
) -> Order | UltError:
    """One command as the broker actor sends it: a token (1 s at most), then its request."""
    with charged_as(kind):
        try:
            await budget.prepay(kind, within_s=1.0)
            result: Order = await command()
        except UltError as exc:
            return exc
    return result


async def test_a_restarted_services_burst_sends_no_more_than_the_venue_has_left() -> None:
    # The venue's clock stands still half-way through a minute (the connector reads the
    # same one): the minute's count and its reset stay put for the test's length.
    now_ns = clock_standing_in_this_minute(30)
    async with (
        running_sim(rate_limit_per_minute=30, now_ns=now_ns) as (sim, port),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
            trust_env=False,
        ) as killed,
    ):
        for _ in range(25):  # what the killed process sent this minute
            assert (await killed.get("/v2/clock")).status_code == 200
        budget = budget_for("alpaca", "alpaca", None, None)
        assert budget is not None
        connector = fresh_connector(port, budget, now_ns)
        async with connected_connector(connector, stream=False):  # 4 left after connect's
            answers: list[Order | UltError] = []

            async def place(i: int) -> None:
                submit = partial(connector.submit, resting_buy(f"burst-{i}"))
                answers.append(await as_the_broker_actor(budget, "order", submit))

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    for i in range(10):
                        nursery.start_soon(place, i)
            assert sim.rate_limited == 0
            placed = [a for a in answers if isinstance(a, Order)]
            refused = [a for a in answers if not isinstance(a, Order)]
            # Orders leave the cancels' two of the four; the rest are refused in time,
            # unsent, told when the venue's minute ends.
            assert len(placed) == 2
            assert all(isinstance(a, RateLimited) for a in refused)
            assert all(
                a.retry_after is not None and 25 <= a.retry_after <= 31 for a in refused
            )
            cancel = partial(connector.cancel, placed[0].id)
            canceled = await as_the_broker_actor(budget, "cancel", cancel)
            assert isinstance(canceled, Order) and canceled.status == "canceled"
            assert sim.rate_limited == 0
