"""Property: random crash schedules never leak tasks, break intensity, or lie in health."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runtime.probe import Probe
from ult_actors.runtime.health import ActorHealth
from ult_actors.runtime.supervisor import Backoff, ChildSpec, Supervisor

LEAVES = ["a", "b", "c", "d", "e"]
BACKOFF = Backoff(initial_s=0.05, cap_s=1.0, multiplier=2.0, stable_after_s=3.0)

step = st.tuples(st.sampled_from(LEAVES), st.sampled_from(["crash", "exit"]), st.floats(0.0, 2.0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedule=st.lists(step, max_size=25),
    root_strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    sub_strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    seed=st.integers(0, 2**16),
)
def test_random_crash_schedules_keep_the_tree_honest(
    schedule: list[tuple[str, str, float]], root_strategy: Any, sub_strategy: Any, seed: int
) -> None:
    probe = Probe()
    decisions: dict[str, list[float]] = defaultdict(list)

    def listener(h: ActorHealth) -> None:
        if h.state == "restarting":
            times = decisions[h.parent or ""]
            now = trio.current_time()
            if not times or times[-1] != now:
                times.append(now)

    sub = Supervisor(
        "sub",
        [
            ChildSpec(id="d", start=probe.body("d"), restart="permanent"),
            ChildSpec(id="e", start=probe.body("e"), restart="transient"),
        ],
        strategy=sub_strategy,
        max_restarts=3,
        period_s=5.0,
        backoff=BACKOFF,
        rng=random.Random(seed),
    )
    root = Supervisor(
        "root",
        [
            ChildSpec(id="a", start=probe.body("a"), restart="permanent"),
            ChildSpec(id="b", start=probe.body("b"), restart="transient"),
            ChildSpec(id="c", start=probe.body("c"), restart="temporary"),
            sub.as_child(),
        ],
        strategy=root_strategy,
        max_restarts=4,
        period_s=5.0,
        backoff=BACKOFF,
        rng=random.Random(seed + 1),
        listener=listener,
    )
    supervisors = {"root": root, "sub": sub}

    def check_health() -> None:
        for sup in supervisors.values():
            for cid in [c.spec.id for c in sup._children if c.spec.supervisor is None]:
                child = sup.child(cid)
                assert probe.max_live[cid] <= 1, f"two incarnations of {cid} at once"
                running = child.health.state == "running"
                assert running == (probe.live[cid] == 1), (cid, child.health.state)
                assert child.health.restarts == probe.starts[cid] - 1

    async def main() -> None:
        gave_up = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(root.run)
                await trio.testing.wait_all_tasks_blocked()
                for leaf, action, delay in schedule:
                    await trio.sleep(delay)
                    await trio.testing.wait_all_tasks_blocked()
                    check_health()
                    if probe.live[leaf]:
                        (probe.crash if action == "crash" else probe.exit)(leaf)
                await trio.sleep(10)
                await trio.testing.wait_all_tasks_blocked()
                check_health()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup:
            gave_up = True
        assert all(n == 0 for n in probe.live.values()), "a task outlived the tree"
        for name, times in decisions.items():
            sup = supervisors[name]
            for i, t in enumerate(times):
                in_window = [u for u in times[i:] if u - t <= sup.period_s]
                assert len(in_window) <= sup.max_restarts, f"{name} restarted past its intensity"
        if not gave_up:
            assert root.health.state != "failed"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
