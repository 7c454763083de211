"""A burst of orders costs each actor on the path one wake-up, not one per order, and
spawns no task per order."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import trio
import trio.testing

from tests.actors.harness import paper_service, submit

#: Each actor's task, told by a function its await chain passes through.
_ACTORS = {
    "router_actor.<locals>.start": "router",
    "_Risk.run": "risk",
    "_Risk.follow_events": "risk events",
    "_Positions.follow_events": "positions events",
}


def _actor_of(task: trio.lowlevel.Task) -> str | None:
    """Which actor ``task`` serves, from the coroutines it is suspended in."""
    coro: object = task.coro
    if task.coro.cr_code.co_qualname == "_BrokerIncarnation._serve_orders":
        return "broker orders"  # the tasks of the orders lane (the other lanes' is _serve)
    found = None
    while coro is not None:
        code = getattr(coro, "cr_code", None) or getattr(coro, "ag_code", None)
        if code is not None and code.co_qualname in _ACTORS:
            found = _ACTORS[code.co_qualname]  # the innermost one wins
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return found


class WakeUps(trio.abc.Instrument):
    """Scheduler steps per actor, and the tasks the service spawns."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        #: Tasks spawned, other than the test's own clients.
        self.spawned: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if not task.name.startswith("tests."):
            self.spawned.append(task.name)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        actor = _actor_of(task)
        if actor is not None:
            self.count[actor] += 1


async def _burst(svc: Any, orders: int) -> None:
    async with trio.open_nursery() as clients:
        for _ in range(orders):
            clients.start_soon(partial(submit, svc, qty=1))
    await trio.testing.wait_all_tasks_blocked()


async def test_a_burst_of_orders_wakes_each_actor_on_the_path_once(tmp_path: Path) -> None:
    async with paper_service(tmp_path) as (svc, _made):
        await submit(svc, qty=1)  # warm: the first order opens what later ones reuse
        await _burst(svc, 64)  # and a first, bigger burst grows the broker's order workers
        wake_ups = WakeUps()
        trio.lowlevel.add_instrument(wake_ups)
        try:
            await _burst(svc, 30)
        finally:
            trio.lowlevel.remove_instrument(wake_ups)
    # Each submit runs the idle router's step in its own task (direct entry), risk's
    # check runs in that step (risk's mailbox is idle), and the broker's order workers
    # (grown by the bigger first burst) take them without a task spawned per order.
    assert wake_ups.count["router"] == 0, wake_ups.count
    assert wake_ups.count["risk"] == 0, wake_ups.count
    # Risk and positions fold the orders' events as they are published: no wake-up.
    assert wake_ups.count["risk events"] == 0, wake_ups.count
    assert wake_ups.count["positions events"] == 0, wake_ups.count
    assert wake_ups.spawned == [], wake_ups.spawned
