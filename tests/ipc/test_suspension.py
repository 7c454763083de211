"""``run_noting_suspension``: a coroutine awaited in the caller's task, told apart by
whether it waited."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ult_actors.ipc.suspension import run_noting_suspension


async def test_a_coroutine_that_does_not_wait_runs_to_its_end_unnoticed() -> None:
    done: list[str] = []
    noted: list[str] = []

    async def quick() -> None:
        done.append("quick")

    assert await run_noting_suspension(quick(), lambda: noted.append("suspended"))
    assert done == ["quick"] and noted == []


async def test_a_coroutine_that_waits_is_noted_once_as_it_first_suspends() -> None:
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
        finished_at_once = await run_noting_suspension(slow(), lambda: events.append("noted"))
    assert not finished_at_once
    assert events == ["before", "noted", "gate", "between", "after"]


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
            await run_noting_suspension(waits_forever(), lambda: None)
    assert scope.cancelled_caught
    assert seen == [trio.Cancelled]


async def test_an_error_raised_after_a_wait_reaches_the_caller() -> None:
    async def fails() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await run_noting_suspension(fails(), lambda: None)
