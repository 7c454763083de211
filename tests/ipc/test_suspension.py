"""``finish``: a coroutine whose first step was taken by hand (as the connection takes
a lone request's answer) and suspended runs on in the caller's task as if awaited."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest
import trio
import trio.testing

from ult_actors.ipc.suspension import finish


def _first_step(coro: Coroutine[Any, Any, None]) -> Any:
    """What ``coro`` yielded to the scheduler as it first suspended (the connection's
    ``answer.send(None)``)."""
    return coro.send(None)


async def test_a_coroutine_that_suspended_runs_to_its_end_in_the_caller() -> None:
    events: list[str] = []
    gate = trio.Event()

    async def slow() -> None:
        events.append("before")
        await gate.wait()
        events.append("between")
        await trio.lowlevel.checkpoint()
        events.append("after")

    async def open_gate() -> None:
        await trio.testing.wait_all_tasks_blocked()
        events.append("gate")
        gate.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_gate)
        coro = slow()
        signal = _first_step(coro)
        events.append("suspended")
        await finish(coro, signal)
    assert events == ["before", "suspended", "gate", "between", "after"]


async def test_a_waiting_coroutine_is_cancelled_like_one_awaited_directly() -> None:
    seen: list[type[BaseException]] = []

    async def waits_forever() -> None:
        try:
            await trio.sleep_forever()
        except BaseException as exc:
            seen.append(type(exc))
            raise

    async def cancel_when_waiting(scope: trio.CancelScope) -> None:
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(cancel_when_waiting, scope)
            coro = waits_forever()
            await finish(coro, _first_step(coro))
    assert scope.cancelled_caught
    assert seen == [trio.Cancelled]


async def test_an_error_raised_after_a_wait_reaches_the_caller() -> None:
    async def fails() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("broken")

    coro = fails()
    with pytest.raises(ValueError, match="broken"):
        await finish(coro, _first_step(coro))
