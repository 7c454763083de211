"""The account request budget: priorities, deadlines, the venue's pause (issue 18 §2)."""

from __future__ import annotations

import bisect
import random

import pytest
import trio
import trio.testing

from ult_actors.brokers.budget import RateBudget, RequestClass, budget_for
from ult_actors.errors import RateLimited


def _budget(rate_per_s: float = 10.0, burst: int = 2, **kwargs: int) -> RateBudget:
    return RateBudget("alpaca", rate_per_s=rate_per_s, burst=burst, **kwargs)


async def _spend_all(budget: RateBudget) -> None:
    for _ in range(budget.burst):
        await budget.acquire("order")


async def test_cancel_goes_before_queued_orders(autojump_clock: trio.testing.MockClock) -> None:
    budget = _budget(query_reserve=0)
    await _spend_all(budget)
    served: list[tuple[str, float]] = []

    async def request(kind: RequestClass, tag: str) -> None:
        await budget.acquire(kind)
        served.append((tag, trio.current_time()))

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(request, "order", f"order{i}")
            await trio.testing.wait_all_tasks_blocked()  # queued in this order
        started = trio.current_time()
        nursery.start_soon(request, "query", "query")
        nursery.start_soon(request, "replace", "replace")
        nursery.start_soon(request, "cancel", "cancel")
    order = [tag for tag, _ in served]
    assert order == ["cancel", "replace", "order0", "order1", "order2", "order3", "order4", "query"]
    # The cancel got the very next token: within one token interval of asking.
    assert served[0][1] - started <= 1 / budget.rate_per_s + 1e-9


async def test_requests_keep_to_the_rate(autojump_clock: trio.testing.MockClock) -> None:
    budget = _budget(rate_per_s=50.0, burst=5)
    assert budget.cancel_reserve == 2
    start = trio.current_time()
    for _ in range(103):
        await budget.acquire("order")
    # 3 at once (the other 2 are the cancels'), then 100 more at 50/s: two seconds.
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_queries_leave_a_reserve_for_orders(autojump_clock: trio.testing.MockClock) -> None:
    budget = _budget(rate_per_s=10.0, burst=4, query_reserve=2, cancel_reserve=0)
    for _ in range(2):
        await budget.acquire("query")
    start = trio.current_time()
    await budget.acquire("query")  # 2 left = the reserve: waits for one more
    assert trio.current_time() - start == pytest.approx(0.1)
    start = trio.current_time()
    await budget.acquire("order")  # orders may spend the reserve
    await budget.acquire("order")
    assert trio.current_time() == start


async def test_order_that_cannot_go_in_time_is_refused_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _budget(rate_per_s=10.0, burst=1)
    await budget.acquire("order")
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(5):  # 0.5 s of orders queued
            nursery.start_soon(budget.acquire, "order")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RateLimited) as refused:
            await budget.acquire("order", within_s=0.3)
        assert trio.current_time() == start  # not after waiting out its deadline
        assert refused.value.code == "rate_limited"
        assert refused.value.retry_after == pytest.approx(0.6)
        # A cancel with the same deadline is ahead of all of them: it goes.
        await budget.acquire("cancel", within_s=0.3)
        assert trio.current_time() - start == pytest.approx(0.1)
    assert budget.health().refused == 1


async def test_waiter_overtaken_by_urgent_requests_is_refused_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _budget(rate_per_s=10.0, burst=1)
    await budget.acquire("order")
    start = trio.current_time()
    outcome: list[str] = []

    async def late_order() -> None:
        try:
            await budget.acquire("order", within_s=0.25)
            outcome.append("sent")
        except RateLimited:
            outcome.append(f"refused at {trio.current_time() - start:.2f}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late_order)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(4):  # cancels keep arriving and take every token
            nursery.start_soon(budget.acquire, "cancel")
    assert outcome == ["refused at 0.25"]
    assert budget.health().waiting == {"cancel": 0, "replace": 0, "order": 0, "query": 0}


async def test_pause_stops_every_class_until_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _budget(rate_per_s=10.0, burst=5)
    budget.pause(3.0)
    health = budget.health()
    assert health.paused_for_s == pytest.approx(3.0)
    assert health.used == 5
    start = trio.current_time()
    await budget.acquire("cancel")
    # The pause, then one token's refill: the whole account backed off.
    assert trio.current_time() - start == pytest.approx(3.1)


async def test_health_counts_waiting_by_class(autojump_clock: trio.testing.MockClock) -> None:
    budget = _budget(rate_per_s=1.0, burst=1)
    await budget.acquire("order")
    async with trio.open_nursery() as nursery:
        for kind in ("order", "order", "query", "cancel"):
            nursery.start_soon(budget.acquire, kind)
        await trio.testing.wait_all_tasks_blocked()
        health = budget.health()
        assert health.used == 1
        assert health.waiting == {"cancel": 1, "replace": 0, "order": 2, "query": 1}


async def test_a_query_behind_a_flood_of_orders_slows_down_but_is_not_starved(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _budget(rate_per_s=10.0, burst=2, query_reserve=1)
    await _spend_all(budget)
    start = trio.current_time()
    served: list[str] = []

    async def request(kind: RequestClass) -> None:
        await budget.acquire(kind)
        served.append(kind)

    async with trio.open_nursery() as nursery:
        for _ in range(50):  # 5 s of orders at 10/s
            nursery.start_soon(request, "order")
        await trio.testing.wait_all_tasks_blocked()
        await request("query")
        waited = trio.current_time() - start
    # It waited its patience (the orders went first), then took the next token.
    assert budget.query_patience_s <= waited <= budget.query_patience_s + 1 / budget.rate_per_s
    assert served.index("query") < len(served) - 1  # orders were still queued behind it


async def test_many_queries_past_their_patience_are_served_in_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _budget(rate_per_s=2.0, burst=1, query_reserve=0)
    await _spend_all(budget)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(10):  # 5 s of queries: most wait past their patience
            nursery.start_soon(budget.acquire, "query")
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_a_request_cancelled_on_arrival_spends_no_token() -> None:
    # Its order is never sent: the account's budget must not pay for it.
    budget = _budget(rate_per_s=0.001, burst=2)
    with trio.CancelScope() as scope:
        scope.cancel()
        await budget.acquire("order")
    assert budget.health().used == 0
    await _spend_all(budget)
    assert budget.health().used == 2


async def test_a_cancel_goes_at_once_while_new_orders_saturate_the_budget_and_the_limit_holds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # TWS's default budget (40/s, burst 5: 45 in any second, under the venue's 50).
    budget = budget_for("ib", "ib", None, None)
    assert budget is not None
    interval = 1 / budget.rate_per_s
    rng = random.Random(7)
    sent: list[float] = []
    waits: list[float] = []

    async def orders_forever() -> None:
        while True:
            await budget.acquire("order")
            sent.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(orders_forever)
        await trio.sleep(1.0)  # the bucket spent, the orders waiting
        for _ in range(100):
            await trio.sleep(rng.uniform(interval, 3 * interval))
            asked = trio.current_time()
            await budget.acquire("cancel")
            waits.append(trio.current_time() - asked)
            sent.append(trio.current_time())
        nursery.cancel_scope.cancel()
    # No timer between a cancel and its token: it never waits for the next one.
    assert max(waits) == 0
    # The orders kept the budget saturated, and nothing ever went over it.
    sent.sort()
    most_in_a_second = max(
        bisect.bisect_right(sent, t + 1.0 - 1e-9) - i for i, t in enumerate(sent)
    )
    assert most_in_a_second <= budget.burst + budget.rate_per_s
    assert len(sent) >= budget.rate_per_s * (sent[-1] - sent[0])


async def test_cancels_beyond_the_reserve_take_the_next_tokens_before_any_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _budget(rate_per_s=10.0, burst=5)  # 2 tokens kept for cancels
    served: list[str] = []

    async def request(kind: RequestClass) -> None:
        await budget.acquire(kind)
        served.append(kind)

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(request, "order")
        await trio.testing.wait_all_tasks_blocked()
        assert served == ["order"] * 3
        start = trio.current_time()
        for _ in range(4):
            nursery.start_soon(request, "cancel")
        await trio.testing.wait_all_tasks_blocked()
        assert served.count("cancel") == 2  # the reserve, at once
        assert trio.current_time() == start
    # Then one token interval each, ahead of the orders still waiting.
    assert served[3:9] == ["cancel"] * 4 + ["order"] * 2


async def test_eta_is_the_wait_a_request_asking_now_gets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _budget(burst=5)  # 10/s; orders leave 2 tokens for cancels
    for _ in range(3):
        await budget.acquire("order")
    assert budget.eta_s("cancel") == 0.0  # the reserve is there
    assert budget.eta_s("order") == pytest.approx(0.1)  # an order needs 3: one more token
    await budget.acquire("cancel")
    await budget.acquire("cancel")
    assert budget.eta_s("cancel") == pytest.approx(0.1)
    asked = trio.current_time()
    await budget.acquire("cancel")
    assert trio.current_time() - asked == pytest.approx(0.1)


# -- a venue that tells what is left of its window (Alpaca's X-RateLimit-*) ----------


def _listening(rate_per_s: float = 10.0, burst: int = 20) -> RateBudget:
    """A budget whose venue counts every request of the key (2 tokens kept for cancels)."""
    budget = _budget(rate_per_s=rate_per_s, burst=burst, query_reserve=0)
    budget.listen_to_venue()
    return budget


async def _served(budget: RateBudget, kind: RequestClass, out: list[float]) -> None:
    await budget.acquire(kind)
    out.append(trio.current_time())


async def test_a_fresh_budget_sends_one_request_then_no_more_than_the_venue_has_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _listening()
    start = trio.current_time()
    served: list[float] = []
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(_served, budget, "order", served)
        await trio.testing.wait_all_tasks_blocked()
        assert served == [start]  # its bucket is full, but the venue's count unknown
        budget.heard(5, 30.0)  # the first reply: 5 left, the window resets in 30 s
        await trio.testing.wait_all_tasks_blocked()
        # Orders leave the cancels' 2 of the 5; the rest wait for the reset.
        assert served == [start] * 4
        with pytest.raises(RateLimited) as refused:
            await budget.acquire("order", within_s=10.0)
        assert refused.value.retry_after == pytest.approx(30.0)
        await budget.acquire("cancel")
        await budget.acquire("cancel")
        assert trio.current_time() == start
        assert budget.eta_s("cancel") == pytest.approx(30.0)
        # At the reset, what is left of the new window is unknown again: one goes alone.
        await trio.sleep(30.0 - (trio.current_time() - start))
        await trio.testing.wait_all_tasks_blocked()
        assert served[4:] == [start + 30.0]
        budget.heard(199, 60.0)
    assert served[5:] == [start + 30.0] * 5


async def test_without_a_word_from_the_venue_it_goes_on_one_request_a_token_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A first request whose reply never comes (lost, timed out) does not stop the budget.
    budget = _listening(rate_per_s=10.0)
    served: list[float] = []
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(_served, budget, "cancel", served)
    assert [round(t - start, 6) for t in served] == [0.0, 0.1, 0.2, 0.3]


async def test_a_venue_that_does_not_count_leaves_the_bucket_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _listening()
    start = trio.current_time()
    await budget.acquire("order")
    budget.heard(None, None)  # a reply without X-RateLimit-* (the limit is off)
    for _ in range(17):  # the rest of the burst, less the cancels' 2
        await budget.acquire("order")
    assert trio.current_time() == start


async def test_within_a_window_what_is_left_only_goes_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = _listening()
    await budget.acquire("cancel")
    budget.heard(10, 30.0)
    for _ in range(4):
        await budget.acquire("cancel")
    # Replies to those four, counted before the later ones: each says more than is left.
    budget.heard(9, 29.8)
    budget.heard(8, 30.4)
    assert budget.eta_s("order") == 0.0  # 6 left: orders may take 4 of them
    for _ in range(4):
        await budget.acquire("order")
    assert budget.eta_s("order") == pytest.approx(30.0)
    budget.heard(20, 5.0)  # a late reply of an older window: not this one's count
    assert budget.eta_s("order") == pytest.approx(30.0)
    budget.heard(2, 70.0)  # the next window, already partly spent by another process
    assert budget.eta_s("order") == pytest.approx(70.0)
    assert budget.eta_s("cancel") == 0.0
