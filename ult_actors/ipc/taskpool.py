"""Tasks that stay alive between jobs: a job goes to an idle task, woken with it in hand.

A connection's tasks take turns at reading and at answering what was read
(a request may wait on a slow broker while the next is read and answered,
each by another task). Starting a task per job costs more than waking one
that is already there, so a connection keeps the tasks that finished their
job parked, up to ``max_idle`` of them, and ``hand`` gives the next job
straight to one of those (no queue to contend for), starting a new task only
when none is idle. A parked task holds ~2 KB.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

Job = TypeVar("Job")


class _Idle(Generic[Job]):
    """A parked task and, once handed one, its next job (None: stop)."""

    __slots__ = ("job", "task")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.job: Job | None = None


class TaskPool(Generic[Job]):
    """Runs each job handed to it with ``run`` in a task of ``nursery``."""

    def __init__(
        self, nursery: trio.Nursery, run: Callable[[Job], Awaitable[None]], *, max_idle: int
    ) -> None:
        self._nursery = nursery
        self._run = run
        self._max_idle = max_idle
        self._idle: list[_Idle[Job]] = []
        self._closed = False

    @property
    def idle(self) -> int:
        """Tasks parked, waiting for a job."""
        return len(self._idle)

    def hand(self, job: Job) -> None:
        """Run ``job`` in an idle task (woken now, it runs in the next scheduler round)
        or, with none idle (always once closed), in a new one."""
        if self._idle:
            idle = self._idle.pop()
            idle.job = job
            trio.lowlevel.reschedule(idle.task)
        else:
            self._nursery.start_soon(self._work, job)

    def close(self) -> None:
        """End the idle tasks; the busy ones end after their job."""
        self._closed = True
        idle = self._idle[:]
        self._idle.clear()
        for waiting in idle:
            trio.lowlevel.reschedule(waiting.task)  # with no job: it returns

    async def _work(self, job: Job) -> None:
        # One slot and one abort function for the task's whole life, not one per park.
        waiting: _Idle[Job] = _Idle(trio.lowlevel.current_task())
        idle = self._idle

        def abort(_: object) -> trio.lowlevel.Abort:
            idle.remove(waiting)
            return trio.lowlevel.Abort.SUCCEEDED

        while True:
            await self._run(job)
            if self._closed or len(idle) >= self._max_idle:
                return
            waiting.job = None
            idle.append(waiting)
            await trio.lowlevel.wait_task_rescheduled(abort)
            if waiting.job is None:
                return
            job = waiting.job
