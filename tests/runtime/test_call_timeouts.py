"""``call`` times out without a cancel scope per call: the run's ``CallTimeouts`` answers.

Unanswered calls get ``CallTimeout`` at their own deadline whatever order
their deadlines come in; answered ones leave nothing behind for it; one task
does it for every call of the run.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from ult_actors.runtime.mailbox import CallTimeout, CallTimeouts, Mailbox, call


async def _timed_out_at(mailbox: Mailbox[str], timeout: float, at: dict[float, float]) -> None:
    with pytest.raises(CallTimeout, match=f"no answer within {timeout:g}s"):
        await call(mailbox, "nobody reads this", timeout=timeout)
    at[timeout] = trio.current_time()


async def test_unanswered_calls_time_out_at_their_own_deadlines(autojump_clock: Any) -> None:
    mailbox: Mailbox[str] = Mailbox()
    at: dict[float, float] = {}
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for timeout in (5.0, 30.0, 1.0, 2.5):  # a later call with an earlier deadline too
            nursery.start_soon(_timed_out_at, mailbox, timeout, at)
            await trio.testing.wait_all_tasks_blocked()
    for timeout, when in at.items():
        assert timeout <= when - start <= timeout + 0.011, (timeout, when - start)
    assert mailbox.depth == 4
    with pytest.raises(trio.WouldBlock):  # nobody waits for them: dropped when read
        mailbox.receive_nowait()
    assert mailbox.expired == 4


async def test_one_task_times_every_call_and_answered_calls_leave_nothing() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=2000)

    async def answer() -> None:
        while True:
            env = await mailbox.receive()
            assert env.reply is not None
            env.reply.set(env.msg * 2)
            mailbox.answered(env)

    spawned: list[str] = []

    class Spawns(trio.abc.Instrument):
        def task_spawned(self, task: trio.lowlevel.Task) -> None:
            spawned.append(task.name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        trio.lowlevel.add_instrument(Spawns())
        answers = []
        for n in range(1000):
            answers.append(await call(mailbox, n, timeout=10.0))
        nursery.cancel_scope.cancel()
    assert answers == [n * 2 for n in range(1000)]
    assert spawned == ["ult call timeouts"]  # started on first use, once per run
    keeper = CallTimeouts.of_this_run()
    assert keeper._buckets == {} or all(not b for b in keeper._buckets.values())
