"""Independent children (the broker connections): started together, stopped together,
so one slow connection holds up no other; a dependent tree keeps OTP's one at a time."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio

from ult_actors.runtime.actor import ActorContext
from ult_actors.runtime.supervisor import ChildSpec, Supervisor, SupervisorGaveUp


class SlowChildren:
    """Children that take ``connect_s`` to start and ``disconnect_s`` to stop, noting when."""

    def __init__(self, connect_s: float = 1.0, disconnect_s: float = 0.0) -> None:
        self.connect_s = connect_s
        self.disconnect_s = disconnect_s
        self.started_at: dict[str, float] = {}
        self.stopped_at: dict[str, float] = {}
        self.all_up = trio.Event()

    def spec(self, child_id: str, *, fails: bool = False) -> ChildSpec:
        async def start(ctx: ActorContext[Any]) -> None:
            try:
                await trio.sleep(self.connect_s)
                if fails:
                    raise ConnectionError(f"{child_id} cannot connect")
                self.started_at[child_id] = trio.current_time()
                ctx.started()
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(self.disconnect_s)
                self.stopped_at[child_id] = trio.current_time()

        return ChildSpec(id=child_id, start=start)


def tree(children: SlowChildren, ids: list[str], **options: Any) -> Supervisor:
    return Supervisor("brokers", [children.spec(i) for i in ids], rng=random.Random(1), **options)


@pytest.mark.parametrize(
    ("independent", "started"),
    [(True, {"a": 1.0, "b": 1.0, "c": 1.0}), (False, {"a": 1.0, "b": 2.0, "c": 3.0})],
)
async def test_independent_children_start_together_dependent_ones_each_after_the_last(
    autojump_clock: Any, independent: bool, started: dict[str, float]
) -> None:
    children = SlowChildren(connect_s=1.0)
    sup = tree(children, ["a", "b", "c"], independent=independent)
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        nursery.start_soon(sup.run)
        await trio.sleep(5)
        assert {k: v - t0 for k, v in children.started_at.items()} == started
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("independent", "took"), [(True, 2.0), (False, 6.0)])
async def test_a_shutdown_waits_for_the_slowest_child_only_when_they_are_independent(
    autojump_clock: Any, independent: bool, took: float
) -> None:
    children = SlowChildren(connect_s=0.0, disconnect_s=2.0)
    sup = tree(children, ["a", "b", "c"], independent=independent)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            await trio.sleep(1)
            t0 = trio.current_time()
            scope.cancel()
    assert max(children.stopped_at.values()) - t0 == took
    assert sorted(children.stopped_at) == ["a", "b", "c"]


async def test_a_connection_that_cannot_connect_does_not_keep_its_siblings_down(
    autojump_clock: Any,
) -> None:
    children = SlowChildren(connect_s=1.0)
    specs = [children.spec("a"), children.spec("down", fails=True), children.spec("c")]
    sup = Supervisor("brokers", specs, rng=random.Random(1), independent=True, park_s=60.0)
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        nursery.start_soon(sup.run)
        await trio.sleep(1.5)
        assert {k: v - t0 for k, v in children.started_at.items()} == {"a": 1.0, "c": 1.0}
        assert sup.child("down").health.connect_failures == 1  # tried again meanwhile
        assert sup.child("a").health.state == sup.child("c").health.state == "running"
        nursery.cancel_scope.cancel()


async def test_without_parking_a_child_that_fails_to_start_still_fails_the_supervisor(
    autojump_clock: Any,
) -> None:
    children = SlowChildren(connect_s=1.0)
    specs = [children.spec("a"), children.spec("down", fails=True)]
    sup = Supervisor("brokers", specs, rng=random.Random(1), independent=True)
    with pytest.RaisesGroup(
        pytest.RaisesExc(SupervisorGaveUp, match="child down failed to start"),
        flatten_subgroups=True,
    ):
        await sup.run()
    assert children.stopped_at.keys() == {"a", "down"}
