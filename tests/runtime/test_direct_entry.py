"""Direct entry: a call to an idle actor runs its handler in the caller's task, and the
actor stays an actor (one message at a time, in order, its own crashes and restarts)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from ult_actors.runtime.actor import ActorContext, serve_mailbox
from ult_actors.runtime.mailbox import ActorCrashed, Envelope, Mailbox, call
from ult_actors.runtime.supervisor import Backoff, ChildSpec, Supervisor


class Echo(msgspec.Struct, frozen=True):
    n: int


class Crash(msgspec.Struct, frozen=True):
    pass


class Held(msgspec.Struct, frozen=True):
    """Answered with ``n`` once the test lets it go (``Actor.release``); ``n < 0`` crashes then."""

    n: int


Msg = Echo | Crash | Held


class Actor:
    """An actor serving with its door open; records who ran each handler, and in what order."""

    def __init__(self) -> None:
        self.mailbox: Mailbox[Msg] = Mailbox(capacity=100)
        #: (incarnation, n, whether the actor's own task ran it), in the order handled.
        self.handled: list[tuple[int, int, bool]] = []
        self.release = trio.Event()
        self.tasks: set[trio.lowlevel.Task] = set()

    async def start(self, ctx: ActorContext[Msg]) -> None:
        self.tasks.add(trio.lowlevel.current_task())

        async def handle(env: Envelope[Msg]) -> None:
            msg = env.msg
            if isinstance(msg, Crash):
                raise RuntimeError("asked to crash")
            if isinstance(msg, Held):
                await self.release.wait()
                if msg.n < 0:
                    raise RuntimeError("asked to crash once released")
            own = trio.lowlevel.current_task() in self.tasks
            self.handled.append((ctx.incarnation, msg.n, own))
            ctx.reply(env, msg.n)

        await serve_mailbox(ctx, handle, direct=True)


@asynccontextmanager
async def running() -> AsyncIterator[tuple[Actor, Supervisor]]:
    actor = Actor()
    sup = Supervisor(
        "root",
        [ChildSpec(id="echo", start=actor.start, mailbox=actor.mailbox)],
        backoff=Backoff(initial_s=0.5, cap_s=0.5, multiplier=1.0),
        max_restarts=10,
        rng=random.Random(3),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await trio.testing.wait_all_tasks_blocked()
        yield actor, sup
        nursery.cancel_scope.cancel()


class Steps(trio.abc.Instrument):
    """Task steps of some tasks."""

    def __init__(self, tasks: set[trio.lowlevel.Task]) -> None:
        self.tasks = tasks
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += task in self.tasks


async def test_a_call_to_an_idle_actor_is_answered_without_waking_the_actor() -> None:
    async with running() as (actor, _sup):
        steps = Steps(actor.tasks)
        trio.lowlevel.add_instrument(steps)
        try:
            assert [await call(actor.mailbox, Echo(n)) for n in range(3)] == [0, 1, 2]
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.steps == 0
        assert actor.handled == [(1, 0, False), (1, 1, False), (1, 2, False)]
        assert actor.mailbox.handled == 3 and not actor.mailbox.in_flight


async def test_mail_queued_first_is_handled_first_then_the_door_opens_again() -> None:
    async with running() as (actor, _sup):
        actor.mailbox.send_nowait(Echo(1))  # queued, the actor not yet woken for it
        assert await call(actor.mailbox, Echo(2)) == 2
        await trio.testing.wait_all_tasks_blocked()
        assert await call(actor.mailbox, Echo(3)) == 3
        # 1 by the actor's task (it was there first), 2 queued behind it, 3 entered directly.
        assert actor.handled == [(1, 1, True), (1, 2, True), (1, 3, False)]


async def test_requests_arriving_during_a_direct_run_wait_for_it_in_order() -> None:
    async with running() as (actor, _sup):
        answers: list[int] = []

        async def ask(msg: Msg) -> None:
            answers.append(await call(actor.mailbox, msg))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, Held(1))  # enters directly, then waits inside the handler
            await trio.testing.wait_all_tasks_blocked()
            for n in (2, 3):  # the door is shut: queued, in turn
                nursery.start_soon(ask, Echo(n))
                await trio.testing.wait_all_tasks_blocked()
            assert actor.handled == []  # one message at a time: 2 and 3 wait for 1
            actor.release.set()
        assert sorted(answers) == [1, 2, 3]
        assert actor.handled == [(1, 1, False), (1, 2, True), (1, 3, True)]


async def test_a_crash_in_a_handler_entered_directly_crashes_the_actor_not_the_caller(
    autojump_clock: Any,
) -> None:
    async with running() as (actor, sup):
        with pytest.raises(ActorCrashed, match=r"crashed actor echo \(RuntimeError\)"):
            await call(actor.mailbox, Crash())
        # The caller carries on; the actor crashed in its own task and is restarted.
        await trio.testing.wait_all_tasks_blocked()
        child = sup.child("echo")
        assert child.health.state == "restarting"
        assert child.health.last_error is not None
        assert "asked to crash" in child.health.last_error.message
        assert await call(actor.mailbox, Echo(5)) == 5
        assert child.health.restarts == 1
        assert actor.handled == [(2, 5, True)]  # the crash was not redelivered


async def test_a_request_queued_behind_a_direct_run_that_crashes_goes_to_the_next_incarnation(
    autojump_clock: Any,
) -> None:
    async with running() as (actor, sup):
        answers: list[int] = []

        async def ask(msg: Msg) -> None:
            answers.append(await call(actor.mailbox, msg))

        async def crash(msg: Msg) -> None:
            with pytest.raises(ActorCrashed, match=r"crashed actor echo \(RuntimeError\)"):
                await call(actor.mailbox, msg)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(crash, Held(-1))  # entered directly; crashes once released
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, Echo(2))  # queued; the actor's task waits for the run
            await trio.testing.wait_all_tasks_blocked()
            actor.release.set()
        assert answers == [2]
        assert actor.handled == [(2, 2, True)]  # by the restarted incarnation
        assert sup.child("echo").health.restarts == 1


async def test_a_caller_cancelled_inside_a_direct_run_leaves_its_request_there(
    autojump_clock: Any,
) -> None:
    async with running() as (actor, _sup):
        with trio.move_on_after(1.0):
            await call(actor.mailbox, Held(1))
        assert not actor.mailbox.in_flight  # abandoned, not redelivered after a crash
        actor.release.set()
        assert await call(actor.mailbox, Echo(2)) == 2
        assert actor.handled == [(1, 2, False)]


class Readings(trio.abc.Clock):
    """A mock clock that notes each reading, a microsecond later than the one before:
    a time tells which reading it came from."""

    def __init__(self) -> None:
        self._mock = trio.testing.MockClock()
        self.readings: list[float] = []

    def start_clock(self) -> None:
        self._mock.start_clock()

    def current_time(self) -> float:
        now = self._mock.current_time() + len(self.readings) * 1e-6
        self.readings.append(now)
        return now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return self._mock.deadline_to_sleep_time(deadline)


@pytest.fixture
def reading_clock() -> Readings:
    return Readings()  # pytest-trio runs the test on it


async def test_a_handler_begun_directly_takes_its_asker_s_reading_of_the_clock_as_now(
    reading_clock: Readings,
) -> None:
    mailbox: Mailbox[Msg] = Mailbox(capacity=10)
    begun: list[tuple[float, float, int]] = []

    async def start(ctx: ActorContext[Msg]) -> None:
        async def handle(env: Envelope[Msg]) -> None:
            ctx.reply(env, -1)

        def begin(env: Envelope[Msg], now: float) -> None:
            begun.append((now, env.deadline, len(reading_clock.readings)))
            assert isinstance(env.msg, Echo)
            ctx.reply(env, env.msg.n)

        await serve_mailbox(ctx, handle, direct=True, begin=begin)

    sup = Supervisor(
        "root", [ChildSpec(id="timed", start=start, mailbox=mailbox)], rng=random.Random(3)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await trio.testing.wait_all_tasks_blocked()
        assert await call(mailbox, Echo(7), timeout=5.0) == 7
        nursery.cancel_scope.cancel()
    ((now, deadline, read),) = begun
    # The reading the asker made its deadline of, the last one taken: none was made anew.
    assert now == reading_clock.readings[read - 1]
    assert deadline == now + 5.0
