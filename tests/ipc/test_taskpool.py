"""The connection's task pool: a job handed after it closed."""

from __future__ import annotations

import trio
import trio.testing

from ult_actors.ipc.taskpool import TaskPool


async def test_a_job_handed_to_a_closed_pool_still_runs_in_a_task_of_its_own() -> None:
    # A connection closes its pool when the client's side ends; requests already read
    # then may still hand a job on (the taker of the rest), which must not be lost.
    done: list[str] = []

    async def run(job: str) -> None:
        done.append(job)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            pool: TaskPool[str] = TaskPool(nursery, run, max_idle=4)
            pool.hand("before")
            await trio.testing.wait_all_tasks_blocked()
            assert pool.idle == 1
            pool.close()
            pool.hand("after")
    assert done == ["before", "after"]
    assert pool.idle == 0
