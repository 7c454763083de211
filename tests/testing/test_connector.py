"""The fault-injecting connector wrapper: drawn faults, switched faults, and nothing else."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from decimal import Decimal
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.fakes import FakeConnector, FakeVenue
from ult_actors.actors.order_lists import is_native
from ult_actors.brokers.base import (
    AnswersWithNews,
    Connector,
    SupportsOrderLists,
    SupportsReplace,
)
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.errors import BrokerUnavailable, RateLimited
from ult_actors.messages import (
    Contingency,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderUpdate,
    ReplaceRequest,
)
from ult_actors.testing.connector import (
    SUBMIT_FAULTS,
    FaultPlan,
    FaultyConnector,
)

_ids = iter(range(1, 1_000_000))


def order() -> OrderRequest:
    return OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(1), type="market", client_order_id=f"c{next(_ids)}"
    )


def wrapped(plan: FaultPlan) -> tuple[FakeVenue, FaultyConnector]:
    venue = FakeVenue()
    return venue, FaultyConnector(FakeConnector("fake", venue), plan)


async def test_with_a_default_plan_every_call_reaches_the_inner_connector_unchanged() -> None:
    venue, conn = wrapped(FaultPlan())
    assert isinstance(conn, Connector)
    await conn.connect()
    placed = await conn.submit(order())
    assert placed.status == "filled"
    assert await conn.get_order(placed.id) == placed
    assert await conn.get_order_by_client_id(placed.client_order_id) == placed
    assert [p.symbol for p in await conn.positions()] == ["AAPL"]
    assert await conn.open_orders() == []
    assert await conn.close_all_positions() is None
    assert (await conn.account()).cash == Decimal(100000)
    assert venue.submits == 1 and conn.plan.connects == 1


async def test_crash_after_apply_lets_the_order_reach_the_venue_then_raises() -> None:
    plan = FaultPlan()
    plan.crash_after_apply = 1
    venue, conn = wrapped(plan)
    request = order()
    with pytest.raises(RuntimeError, match="injected"):
        await conn.submit(request)
    assert venue.submits == 1 and request.client_order_id in venue.by_client
    assert plan.crash_after_apply == 0
    assert (await conn.submit(order())).status == "filled"  # only the next N


async def test_a_closed_gate_holds_submits_until_it_opens() -> None:
    plan = FaultPlan()
    plan.gate = trio.Event()
    venue, conn = wrapped(plan)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.submit, order())
        await trio.testing.wait_all_tasks_blocked()
        assert venue.submits == 0
        plan.gate.set()
    assert venue.submits == 1


async def test_pulling_the_cable_cuts_the_stream_and_arms_a_fresh_one() -> None:
    plan = FaultPlan()
    _, conn = wrapped(plan)
    updates: list[OrderUpdate] = []

    async def sink(update: OrderUpdate) -> None:
        updates.append(update)

    first = plan.pull
    with pytest.RaisesGroup(BrokerUnavailable, flatten_subgroups=True, allow_unwrapped=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.stream_updates, sink)
            await conn.submit(order())
            await trio.testing.wait_all_tasks_blocked()
            assert [u.order.status for u in updates] == ["accepted", "filled"]
            first.set()
    assert plan.pull is not first and not plan.pull.is_set()


async def test_the_stream_drops_on_its_own_at_the_drawn_interval(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    plan = FaultPlan(seed=3, log_path=log, stream_drop_every_s=5.0)
    _, conn = wrapped(plan)

    async def sink(update: OrderUpdate) -> None:
        pass

    with pytest.RaisesGroup(BrokerUnavailable, flatten_subgroups=True, allow_unwrapped=True):
        await conn.stream_updates(sink)
    plan.close()
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        {"kind": "stream_drop", "op": "stream"}
    ]


async def outcome_of(call: Awaitable[object]) -> str:
    try:
        await call
    except RateLimited:
        return "429"
    except BrokerUnavailable:
        return "unavailable"
    except RuntimeError:
        return "crash"
    return "ok"


_APPLIED = {
    "drop": ("unavailable", 0),
    "http_5xx": ("unavailable", 0),
    "http_429": ("429", 0),
    "slow": ("ok", 1),
    "lose_reply": ("unavailable", 1),
    "actor_crash": ("crash", 1),
}


async def test_drawn_submit_faults_are_applied_or_not_as_their_kind_says(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    plan = FaultPlan(seed=7, rate=1.0, log_path=log)
    venue, conn = wrapped(plan)
    seen: list[str] = []
    for _ in range(60):
        before = venue.submits
        outcome = await outcome_of(conn.submit(order()))
        kind = json.loads(log.read_text().splitlines()[-1])["kind"]
        assert (outcome, venue.submits - before) == _APPLIED[kind], kind
        seen.append(kind)
    assert set(seen) == set(SUBMIT_FAULTS)


def test_the_same_seed_draws_the_same_faults() -> None:
    def draws(seed: int) -> list[str | None]:
        plan = FaultPlan(seed=seed, rate=0.5)
        return [plan.roll("submit", SUBMIT_FAULTS) for _ in range(50)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert None in draws(1) and set(draws(1)) - {None}


async def test_query_faults_fail_queries_before_they_reach_the_venue(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    plan = FaultPlan(seed=5, rate=1.0, log_path=log)
    venue, conn = wrapped(plan)
    venue.fail_positions = True  # a call that reaches the venue fails with the venue's words
    for _ in range(30):
        with pytest.raises((BrokerUnavailable, RateLimited)) as failed:
            await conn.positions()
        drawn = json.loads(log.read_text().splitlines()[-1])
        assert drawn["op"] == "positions"
        reached = drawn["kind"] == "slow"
        assert ("injected" not in str(failed.value)) == reached, drawn


class _Plain(FakeConnector):
    """A venue without replaces (``None`` marks a protocol method as absent)."""

    replace = None  # type: ignore[assignment]


class _Lists(FakeConnector):
    """A venue that carries OCOs itself (each leg placed as a plain order) and replaces."""

    native_contingencies: frozenset[Contingency] = frozenset({"oco"})

    async def submit_list(self, request: OrderListRequest) -> list[Order]:
        return [await self.submit(leg) for leg in request.legs]


class _ListsOnly(_Lists):
    replace = None  # type: ignore[assignment]


@pytest.mark.parametrize("inner_class", [_Plain, FakeConnector, _ListsOnly, _Lists])
def test_the_wrapper_claims_exactly_the_capabilities_of_the_connector_it_wraps(
    inner_class: type[FakeConnector],
) -> None:
    inner = inner_class("fake", FakeVenue())
    conn = FaultyConnector(inner, FaultPlan())
    assert isinstance(conn, FaultyConnector) and isinstance(conn, Connector)
    assert isinstance(conn, SupportsReplace) == isinstance(inner, SupportsReplace)
    assert isinstance(conn, SupportsOrderLists) == isinstance(inner, SupportsOrderLists)
    # The service decides native or emulated through the wrapper as it would without it.
    assert is_native(conn, "oco") == is_native(inner, "oco")
    assert is_native(conn, "bracket") is False


def resting(coid: str) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(5), type="limit",
        limit_price=Decimal(90), client_order_id=coid,
    )  # fmt: skip


async def test_drawn_faults_break_a_replace_as_they_break_a_submit(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    plan = FaultPlan(seed=7, rate=1.0, log_path=log)
    venue = FakeVenue()
    inner = FakeConnector("fake", venue)
    conn = FaultyConnector(inner, plan)
    assert isinstance(conn, SupportsReplace)
    seen = []
    for i in range(60):
        old = await inner.submit(resting(f"r{i}"))
        change = ReplaceRequest(
            order_id=old.client_order_id, qty=Decimal(3), client_order_id=f"r{i}.r"
        )
        before = venue.replaces
        outcome = await outcome_of(conn.replace(old, change))
        drawn = json.loads(log.read_text().splitlines()[-1])
        assert drawn["op"] == "replace"
        assert (outcome, venue.replaces - before) == _APPLIED[drawn["kind"]], drawn
        seen.append(drawn["kind"])
    assert set(seen) == set(SUBMIT_FAULTS)


async def test_drawn_faults_break_an_order_list_as_they_break_a_submit(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    plan = FaultPlan(seed=9, rate=1.0, log_path=log)
    venue = FakeVenue()
    conn = FaultyConnector(_Lists("fake", venue), plan)
    assert isinstance(conn, SupportsOrderLists) and conn.native_contingencies == {"oco"}
    seen = []
    for i in range(60):
        request = OrderListRequest(
            contingency="oco", legs=[resting(f"a{i}"), resting(f"b{i}")], list_id=f"l{i}"
        )
        before = venue.submits
        outcome = await outcome_of(conn.submit_list(request))
        drawn = json.loads(log.read_text().splitlines()[-1])
        assert drawn["op"] == "submit_list"
        expected_outcome, applied = _APPLIED[drawn["kind"]]
        assert (outcome, venue.submits - before) == (expected_outcome, 2 * applied), drawn
        seen.append(drawn["kind"])
    assert set(seen) == set(SUBMIT_FAULTS)


async def test_crash_after_apply_and_the_gate_hold_replaces_too() -> None:
    plan = FaultPlan()
    venue = FakeVenue()
    inner = FakeConnector("fake", venue)
    conn = FaultyConnector(inner, plan)
    assert isinstance(conn, SupportsReplace)
    old = await inner.submit(resting("g1"))
    plan.gate = trio.Event()
    change = ReplaceRequest(order_id="g1", qty=Decimal(4), client_order_id="g1.r")
    plan.crash_after_apply = 1
    async with trio.open_nursery() as nursery:

        async def replace() -> None:
            with pytest.raises(RuntimeError, match="injected"):
                await conn.replace(old, change)

        nursery.start_soon(replace)
        await trio.testing.wait_all_tasks_blocked()
        assert venue.replaces == 0
        plan.gate.set()
    assert venue.replaces == 1 and "g1.r" in venue.by_client


async def test_a_lost_answer_with_news_leaves_them_to_the_paper_venue_s_stream(
    tmp_path: Path,
) -> None:
    paper = PaperConnector(
        "paper", PaperSettings(tick_interval_s=0, state_path=str(tmp_path / "paper.db"))
    )
    plan = FaultPlan()
    plan.crash_after_apply = 1
    conn = FaultyConnector(paper, plan)
    assert isinstance(conn, AnswersWithNews) and isinstance(conn, SupportsReplace)
    await conn.connect()
    streamed: list[OrderUpdate] = []

    async def sink(update: OrderUpdate) -> None:
        streamed.append(update)

    async with trio.open_nursery() as nursery:
        await nursery.start(conn.stream_updates, sink)
        lost = order()
        with pytest.raises(RuntimeError, match="injected"):
            await conn.submit_answer(lost)
        answered, news = await conn.submit_answer(order())  # only the next N
        assert answered.status == "filled" and [u.order for u in news] == [answered]
        await trio.testing.wait_all_tasks_blocked()
        # The venue filled the first: its fill comes on the stream, the second's does not.
        assert [(u.order.client_order_id, u.order.status) for u in streamed] == [
            (lost.client_order_id, "filled")
        ]
        assert streamed[0].fill is not None
        nursery.cancel_scope.cancel()
    await conn.disconnect()
