"""Parking: a connection actor that keeps failing is left down and retried, never taking its siblings."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from ult_actors.runtime.actor import ActorContext, serve_mailbox
from ult_actors.runtime.health import ActorHealth
from ult_actors.runtime.mailbox import ActorUnavailable, Envelope, Mailbox, call
from ult_actors.runtime.supervisor import Backoff, ChildSpec, Supervisor

FAST = Backoff(initial_s=0.01, cap_s=0.1, multiplier=2.0, stable_after_s=10.0)


class Link:
    """A connection that is up or down; the actor crashes at start while it is down.

    With ``crash_after_start`` it instead comes up and then crashes (a crash
    loop after connecting, which is what parking is for).
    """

    def __init__(self) -> None:
        self.up = True
        self.crash_after_start = False
        self.starts = 0

    def body(self) -> Any:
        async def start(ctx: ActorContext[str]) -> None:
            self.starts += 1
            if not self.up:
                raise ConnectionError("connection refused")
            if self.crash_after_start:
                ctx.started()
                await trio.sleep(0.5)
                raise ConnectionError("stream dropped")

            async def handle(env: Envelope[str]) -> None:
                ctx.reply(env, f"ok:{env.msg}")

            await serve_mailbox(ctx, handle)

        return start


class States:
    """Health changes seen by the supervisor's listener; lets a test wait for one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._changed = trio.Event()

    def __call__(self, health: ActorHealth) -> None:
        self.seen.append((health.name, health.state))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, name: str, state: str) -> None:
        with trio.fail_after(60):
            while (name, state) not in self.seen:
                await self._changed.wait()


def brokers(
    links: dict[str, Link], park_s: float = 30.0, connect_cap_s: float = 30.0
) -> tuple[Supervisor, dict[str, Mailbox[str]], States]:
    boxes: dict[str, Mailbox[str]] = {name: Mailbox(capacity=16) for name in links}
    states = States()
    sup = Supervisor(
        "brokers",
        [ChildSpec(id=n, start=link.body(), mailbox=boxes[n]) for n, link in links.items()],
        max_restarts=3,
        period_s=10.0,
        backoff=FAST,
        rng=random.Random(3),
        park_s=park_s,
        connect_cap_s=connect_cap_s,
        listener=states,
    )
    return sup, boxes, states


async def start_then_break(nursery: trio.Nursery, sup: Supervisor, link: Link, how: str) -> None:
    """Run ``sup``, then break child ``a``'s link (``up``: refuse; ``crash_after_start``)."""
    nursery.start_soon(sup.run)
    await trio.testing.wait_all_tasks_blocked()
    if how == "up":
        link.up = False
    else:
        link.crash_after_start = True
    sup.child("a").scope.cancel()  # type: ignore[union-attr]


async def test_a_child_that_keeps_crashing_after_it_came_up_is_parked_and_its_siblings_keep_serving(
    autojump_clock: Any,
) -> None:
    links = {"a": Link(), "b": Link()}
    sup, boxes, states = brokers(links)
    async with trio.open_nursery() as nursery:
        # Stopped once: from then on every incarnation comes up, then crashes.
        await start_then_break(nursery, sup, links["a"], "crash_after_start")
        await states.wait_for("a", "failed")
        assert links["a"].starts == 1 + 3  # the first start, then 3 restarts: the 4th exceeds
        assert "stream dropped" in sup.child("a").health.last_error.message  # type: ignore[union-attr]
        # Parked: a request is refused at once, naming why, instead of waiting its deadline.
        before = trio.current_time()
        with pytest.raises(ActorUnavailable, match="down after repeated failures"):
            await call(boxes["a"], "order", timeout=20.0)
        assert trio.current_time() - before < 1.0
        assert await call(boxes["b"], "order") == "ok:order"
        assert sup.child("b").health.state == "running"
        nursery.cancel_scope.cancel()


async def test_a_parked_child_is_retried_after_park_s_and_serves_again(
    autojump_clock: Any,
) -> None:
    links = {"a": Link()}
    sup, boxes, states = brokers(links, park_s=30.0)
    async with trio.open_nursery() as nursery:
        await start_then_break(nursery, sup, links["a"], "crash_after_start")
        await states.wait_for("a", "failed")
        links["a"].crash_after_start = False  # fixed, but nobody tries before park_s
        await trio.sleep(29.9)
        assert links["a"].starts == 4
        await trio.sleep(0.2)
        assert await call(boxes["a"], "again") == "ok:again"
        assert links["a"].starts == 5
        assert sup.child("a").health.state == "running"
        nursery.cancel_scope.cancel()


async def test_one_childs_backoff_does_not_delay_anothers_restart(autojump_clock: Any) -> None:
    slow = Backoff(initial_s=100.0, cap_s=100.0, multiplier=1.0, stable_after_s=1000.0)
    links = {"a": Link(), "b": Link()}
    boxes: dict[str, Mailbox[str]] = {n: Mailbox(capacity=16) for n in links}
    sup = Supervisor(
        "brokers",
        [ChildSpec(id=n, start=link.body(), mailbox=boxes[n]) for n, link in links.items()],
        max_restarts=10,
        period_s=1000.0,
        backoff=slow,
        rng=random.Random(11),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await trio.testing.wait_all_tasks_blocked()
        sup.child("a").scope.cancel()  # type: ignore[union-attr]
        await trio.testing.wait_all_tasks_blocked()
        sup.child("b").scope.cancel()  # type: ignore[union-attr]
        await trio.testing.wait_all_tasks_blocked()
        # b's exit was handled while a waits out its delay, not after it.
        delay_a, delay_b = sup.child("a").last_delay, sup.child("b").last_delay
        assert delay_a is not None and delay_b is not None
        await trio.sleep(max(delay_a, delay_b) + 0.001)
        await trio.testing.wait_all_tasks_blocked()
        assert (links["a"].starts, links["b"].starts) == (2, 2)  # still waiting out its own, longer delay
        nursery.cancel_scope.cancel()


async def test_a_child_that_cannot_connect_keeps_trying_within_the_cap_and_is_never_parked(
    autojump_clock: Any,
) -> None:
    links = {"a": Link(), "b": Link()}
    sup, boxes, states = brokers(links, park_s=1000.0, connect_cap_s=5.0)
    async with trio.open_nursery() as nursery:
        await start_then_break(nursery, sup, links["a"], "up")
        await states.wait_for("a", "connecting")
        # A long outage: far more failed tries than max_restarts (3), none parks it.
        await trio.sleep(120.0)
        assert links["a"].starts > 1 + 3 + 10
        assert ("a", "failed") not in states.seen
        health = {h.name: h for h in sup.snapshot()}["a"]
        assert health.state == "connecting"
        assert health.connect_failures == links["a"].starts - 1
        assert health.next_retry_at is not None
        assert health.last_error is not None and "connection refused" in health.last_error.message
        # Refused at once while it waits, naming why, instead of waiting its deadline.
        before = trio.current_time()
        with pytest.raises(ActorUnavailable, match="cannot connect"):
            await call(boxes["a"], "order", timeout=20.0)
        assert trio.current_time() - before < 5.0
        assert await call(boxes["b"], "order") == "ok:order"
        # The far side returns: it serves again within the cap (plus the try itself).
        states.seen.clear()
        links["a"].up = True
        back = trio.current_time()
        await states.wait_for("a", "running")
        assert trio.current_time() - back <= 5.0
        assert await call(boxes["a"], "again") == "ok:again"
        assert sup.child("a").health.connect_failures == 0
        nursery.cancel_scope.cancel()


async def test_a_connection_away_for_thousands_of_tries_is_still_tried(autojump_clock: Any) -> None:
    # 1,100 failed tries: the backoff's exponent alone would overflow a float.
    links = {"a": Link()}
    sup, boxes, states = brokers(links, connect_cap_s=0.001)
    async with trio.open_nursery() as nursery:
        await start_then_break(nursery, sup, links["a"], "up")
        with trio.fail_after(600):
            while links["a"].starts < 1_100:
                await trio.sleep(1.0)
        assert sup.child("a").health.state in ("connecting", "starting")
        states.seen.clear()
        links["a"].up = True
        await states.wait_for("a", "running")
        assert await call(boxes["a"], "x") == "ok:x"
        nursery.cancel_scope.cancel()
