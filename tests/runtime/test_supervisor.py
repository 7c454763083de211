"""Supervision semantics: strategies, restart types, intensity, backoff, shutdown."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from tests.runtime.probe import Probe
from ult_actors.runtime.health import ActorHealth
from ult_actors.runtime.supervisor import Backoff, ChildSpec, Supervisor, SupervisorGaveUp

FAST = Backoff(initial_s=0.01, cap_s=0.1, multiplier=2.0, stable_after_s=10.0)


def make_tree(
    probe: Probe,
    specs: list[tuple[str, str]],
    *,
    strategy: Any = "one_for_one",
    max_restarts: int = 10,
    period_s: float = 5.0,
    backoff: Backoff = FAST,
    listener: Any = None,
    name: str = "root",
) -> Supervisor:
    children = [ChildSpec(id=cid, start=probe.body(cid), restart=rt) for cid, rt in specs]  # type: ignore[arg-type]
    return Supervisor(
        name,
        children,
        strategy=strategy,
        max_restarts=max_restarts,
        period_s=period_s,
        backoff=backoff,
        rng=random.Random(7),
        listener=listener,
    )


async def start_tree(nursery: trio.Nursery, sup: Supervisor) -> None:
    nursery.start_soon(sup.run)
    await trio.testing.wait_all_tasks_blocked()


async def test_one_for_one_restarts_only_the_crashed_child(autojump_clock: Any) -> None:
    probe = Probe()
    sup = make_tree(probe, [("a", "permanent"), ("b", "permanent"), ("c", "permanent")])
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        probe.crash("b")
        await probe.wait_starts("b", 2)
        await trio.testing.wait_all_tasks_blocked()
        assert probe.starts == {"a": 1, "b": 2, "c": 1}
        assert sup.child("b").health.restarts == 1
        assert sup.child("b").health.last_error is not None
        assert "crashed on purpose" in sup.child("b").health.last_error.message
        assert sup.child("b").health.state == "running"
        nursery.cancel_scope.cancel()


async def test_one_for_all_restarts_every_child_stopping_in_reverse_order(
    autojump_clock: Any,
) -> None:
    probe = Probe()
    sup = make_tree(
        probe, [("a", "permanent"), ("b", "permanent"), ("c", "permanent")], strategy="one_for_all"
    )
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        probe.events.clear()
        probe.crash("b")
        await probe.wait_starts("c", 2)
        await trio.testing.wait_all_tasks_blocked()
        assert probe.starts == {"a": 2, "b": 2, "c": 2}
        assert probe.events == [
            ("b", "stop"),
            ("c", "stop"),
            ("a", "stop"),
            ("a", "start"),
            ("b", "start"),
            ("c", "start"),
        ]
        nursery.cancel_scope.cancel()


async def test_rest_for_one_restarts_later_siblings(autojump_clock: Any) -> None:
    probe = Probe()
    sup = make_tree(
        probe, [("a", "permanent"), ("b", "permanent"), ("c", "permanent")], strategy="rest_for_one"
    )
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        probe.events.clear()
        probe.crash("b")
        await probe.wait_starts("c", 2)
        await trio.testing.wait_all_tasks_blocked()
        assert probe.starts == {"a": 1, "b": 2, "c": 2}
        assert probe.events == [("b", "stop"), ("c", "stop"), ("b", "start"), ("c", "start")]
        nursery.cancel_scope.cancel()


async def test_restart_types_decide_whether_an_exit_is_restarted(autojump_clock: Any) -> None:
    probe = Probe()
    sup = make_tree(
        probe,
        [
            ("perm", "permanent"),
            ("trans_ok", "transient"),
            ("trans_crash", "transient"),
            ("temp", "temporary"),
        ],
    )
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        probe.exit("perm")  # a normal exit of a permanent child is still restarted
        probe.exit("trans_ok")  # a normal exit of a transient child is final
        probe.crash("trans_crash")  # a crash of a transient child is restarted
        probe.crash("temp")  # a temporary child is never restarted
        await probe.wait_starts("perm", 2)
        await probe.wait_starts("trans_crash", 2)
        await trio.testing.wait_all_tasks_blocked()
        assert probe.starts == {"perm": 2, "trans_ok": 1, "trans_crash": 2, "temp": 1}
        assert sup.child("trans_ok").health.state == "stopped"
        assert sup.child("temp").health.state == "failed"
        assert sup.child("perm").health.state == "running"
        nursery.cancel_scope.cancel()


async def test_intensity_exceeded_escalates_to_the_parent(autojump_clock: Any) -> None:
    probe = Probe()
    inner = make_tree(probe, [("w", "permanent")], max_restarts=2, period_s=60.0, name="inner")
    outer = Supervisor(
        "outer",
        [inner.as_child()],
        max_restarts=5,
        period_s=60.0,
        backoff=FAST,
        rng=random.Random(1),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outer.run)
        await probe.wait_starts("w", 1)
        for n in range(3):  # the third crash within the window exceeds 2 restarts
            probe.crash("w")
            await probe.wait_starts("w", n + 2)
        await trio.testing.wait_all_tasks_blocked()
        # inner gave up and was restarted by outer: w runs in a fresh inner.
        assert outer.child("inner").health.restarts == 1
        last = outer.child("inner").health.last_error
        assert last is not None and last.type == "SupervisorGaveUp"
        assert "child w exceeded the restart intensity" in last.message
        assert probe.max_live["w"] == 1
        nursery.cancel_scope.cancel()


async def test_root_that_gives_up_raises_naming_the_child_and_error(autojump_clock: Any) -> None:
    probe = Probe()
    sup = make_tree(probe, [("a", "permanent"), ("b", "permanent")], max_restarts=1)
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await start_tree(nursery, sup)
            probe.crash("b")
            await probe.wait_starts("b", 2)
            probe.crash("b")
    gave_up = info.value.exceptions[0]
    while isinstance(gave_up, BaseExceptionGroup):
        gave_up = gave_up.exceptions[0]
    assert isinstance(gave_up, SupervisorGaveUp)
    assert gave_up.child == "b"
    assert "b crashed on purpose" in str(gave_up)
    assert probe.live == {"a": 0, "b": 0}  # every child was stopped before giving up


async def test_backoff_grows_stays_within_jitter_bounds_and_resets_when_stable(
    autojump_clock: Any,
) -> None:
    probe = Probe()
    backoff = Backoff(initial_s=1.0, cap_s=8.0, multiplier=2.0, stable_after_s=100.0)
    sup = make_tree(probe, [("a", "permanent")], backoff=backoff, max_restarts=100, period_s=1.0)
    delays: list[float] = []
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        for n in range(6):
            before = trio.current_time()
            probe.crash("a")
            await probe.wait_starts("a", n + 2)
            delays.append(trio.current_time() - before)
            assert sup.child("a").last_delay == pytest.approx(delays[-1])
        bounds = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
        for delay, bound in zip(delays, bounds, strict=True):
            assert 0.0 <= delay <= bound
        assert max(delays[3:]) > 2.0  # the window really grew (seeded rng)
        await trio.sleep(150)  # run stably past stable_after_s
        probe.crash("a")
        await probe.wait_starts("a", 8)
        assert sup.child("a").last_delay is not None
        assert sup.child("a").last_delay <= 1.0  # reset to the initial window
        nursery.cancel_scope.cancel()


async def test_shutdown_stops_children_in_reverse_start_order(autojump_clock: Any) -> None:
    probe = Probe()
    sup = make_tree(probe, [("a", "permanent"), ("b", "permanent"), ("c", "permanent")])
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        probe.events.clear()
        nursery.cancel_scope.cancel()
    assert probe.events == [("c", "stop"), ("b", "stop"), ("a", "stop")]
    assert [sup.child(c).health.state for c in "abc"] == ["stopped"] * 3


async def test_shutdown_moves_on_after_a_childs_timeout(autojump_clock: Any) -> None:
    probe = Probe()
    children = [
        ChildSpec(id="a", start=probe.body("a"), shutdown_s=1.0),
        ChildSpec(id="slow", start=probe.body("slow"), shutdown_s=1.0),
    ]
    probe.stop_delay["slow"] = 5.0
    sup = Supervisor("root", children, backoff=FAST)
    stopped_at: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        start = trio.current_time()
        nursery.cancel_scope.cancel()

        async def watch() -> None:
            with trio.CancelScope(shield=True):
                while probe.live["a"]:
                    await trio.sleep(0.1)
                stopped_at["a"] = trio.current_time() - start

        nursery.start_soon(watch)
    # "a" is stopped after slow's 1 s budget ran out, not after slow's 5 s cleanup.
    assert 1.0 <= stopped_at["a"] < 2.0


async def test_health_listener_sees_each_state_change(autojump_clock: Any) -> None:
    probe = Probe()
    seen: list[ActorHealth] = []
    sup = make_tree(probe, [("a", "permanent")], listener=seen.append)
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        probe.crash("a")
        await probe.wait_starts("a", 2)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    states = [h.state for h in seen if h.name == "a"]
    assert states == ["starting", "running", "restarting", "starting", "running", "stopped"]
    snapshot = {h.name: h for h in sup.snapshot()}
    assert snapshot["a"].restarts == 1
    assert snapshot["a"].parent == "root"


async def test_a_child_that_cannot_start_fails_its_supervisor_naming_it(
    autojump_clock: Any,
) -> None:
    later_started = []

    async def broken(ctx: Any) -> None:
        raise OSError("journal file is not writable")

    async def later(ctx: Any) -> None:
        later_started.append(True)
        ctx.started()
        await trio.sleep_forever()

    sup = Supervisor(
        "root",
        [ChildSpec(id="journal", start=broken), ChildSpec(id="router", start=later)],
        backoff=FAST,
        rng=random.Random(2),
    )
    with pytest.raises(BaseExceptionGroup) as info:
        await sup.run()
    gave_up = info.value.exceptions[0]
    assert isinstance(gave_up, SupervisorGaveUp)
    assert "child journal failed to start" in str(gave_up)
    assert isinstance(gave_up.cause, OSError)
    assert later_started == []  # siblings that may depend on it never start


def fails_as_it_stops(stops: list[str]) -> Any:
    """A child with a task of its own that fails as the child is stopped (a broker whose
    connection drops just then): its error comes out beside the stop's ``Cancelled``."""

    async def start(ctx: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            ctx.started()
            try:
                await trio.sleep_forever()
            finally:
                stops.append("stop")
                raise ConnectionError("connection lost while stopping")

    return start


async def test_a_child_failing_as_it_is_stopped_does_not_fail_the_shutdown(
    autojump_clock: Any,
) -> None:
    probe, stops = Probe(), []
    children = [
        ChildSpec(id="a", start=probe.body("a")),
        ChildSpec(id="broker", start=fails_as_it_stops(stops)),
    ]
    sup = Supervisor("root", children, backoff=FAST, rng=random.Random(2))
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        nursery.cancel_scope.cancel()
    assert stops == ["stop"]
    assert probe.events[-1] == ("a", "stop")  # the shutdown went on past it
    assert [sup.child(c).health.state for c in ("a", "broker")] == ["stopped"] * 2


async def test_a_sibling_failing_as_it_is_stopped_for_a_restart_is_restarted_too(
    autojump_clock: Any,
) -> None:
    probe, stops = Probe(), []
    children = [
        ChildSpec(id="a", start=probe.body("a")),
        ChildSpec(id="broker", start=fails_as_it_stops(stops)),
    ]
    sup = Supervisor("root", children, strategy="one_for_all", backoff=FAST, rng=random.Random(2))
    async with trio.open_nursery() as nursery:
        await start_tree(nursery, sup)
        probe.crash("a")
        await probe.wait_starts("a", 2)
        await trio.testing.wait_all_tasks_blocked()
        assert stops == ["stop"]
        assert [sup.child(c).health.state for c in ("a", "broker")] == ["running"] * 2
        nursery.cancel_scope.cancel()
