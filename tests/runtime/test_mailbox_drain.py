"""Draining: an actor wakes once for every message waiting, lane by lane, and a
poisoned request in a burst answers only itself."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from ult_actors.runtime.actor import ActorContext, serve_mailbox
from ult_actors.runtime.mailbox import ActorCrashed, Envelope, Mailbox, ReplySlot
from ult_actors.runtime.supervisor import Backoff, ChildSpec, Supervisor


class StepCounter(trio.abc.Instrument):
    """Counts the scheduler steps of one task: each is one wake-up."""

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


def lane_of(msg: str) -> int:
    return 0 if msg.startswith("urgent") else 1


def mailbox_of(lanes: int, capacity: int) -> Mailbox[str]:
    """One lane, or two: ``urgent-*`` messages in the first."""
    return Mailbox(capacity, lanes=lanes, lane_of=lane_of if lanes > 1 else None)


@pytest.mark.parametrize("lanes", [1, 2])
async def test_a_burst_is_handled_in_one_wake_up_in_order_lane_by_lane(lanes: int) -> None:
    mailbox = mailbox_of(lanes, 16)
    counter = StepCounter()
    handled: list[tuple[str, int]] = []  # (message, the reader's wake-ups so far)

    async def handle(env: Envelope[str]) -> None:
        handled.append((env.msg, counter.steps))
        if env.msg == "order-1":
            mailbox.send_nowait("urgent-2")  # arrives mid-burst: read next, not last

    async def actor(ctx: ActorContext[str]) -> None:
        counter.task = trio.lowlevel.current_task()
        await serve_mailbox(ctx, handle)

    ctx = ActorContext("drain", mailbox, incarnation=1, on_started=lambda: None,
                       on_failed=lambda _e: None)  # fmt: skip
    trio.lowlevel.add_instrument(counter)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(actor, ctx)
            await trio.testing.wait_all_tasks_blocked()  # the reader waits, mailbox empty
            woken_before = counter.steps
            for msg in ["order-1", "order-2", "urgent-1", "order-3"]:
                mailbox.send_nowait(msg)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(counter)
    if lanes == 1:  # arrival order
        assert [msg for msg, _ in handled] == [
            "order-1", "order-2", "urgent-1", "order-3", "urgent-2"
        ]  # fmt: skip
    else:  # the urgent lane first, even for a message that arrived mid-burst
        assert [msg for msg, _ in handled] == [
            "urgent-1", "order-1", "urgent-2", "order-2", "order-3"
        ]  # fmt: skip
    # One wake-up served the whole burst.
    assert {steps for _, steps in handled} == {woken_before + 1}


class Crash(Exception):
    pass


async def test_a_poisoned_request_in_a_burst_crashes_and_answers_only_itself() -> None:
    mailbox: Mailbox[str] = Mailbox(16)
    counter = StepCounter()
    handled: list[tuple[int, str, int]] = []  # (incarnation, message, wake-ups so far)

    async def echo(ctx: ActorContext[str]) -> None:
        counter.task = trio.lowlevel.current_task()

        async def handle(env: Envelope[str]) -> None:
            handled.append((ctx.incarnation, env.msg, counter.steps))
            if env.msg == "poison":
                raise Crash("poisoned")
            ctx.reply(env, env.msg.upper())

        await serve_mailbox(ctx, handle)

    sup = Supervisor(
        "root",
        [ChildSpec(id="echo", start=echo, mailbox=mailbox)],
        backoff=Backoff(initial_s=0.0, cap_s=0.0, multiplier=1.0),
        rng=random.Random(1),
    )
    slots = {msg: ReplySlot() for msg in ["a", "b", "poison", "c", "d"]}
    trio.lowlevel.add_instrument(counter)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            await trio.testing.wait_all_tasks_blocked()
            for msg, slot in slots.items():  # one burst, queued before the actor wakes
                mailbox.send_nowait(msg, reply=slot)
            answers: dict[str, Any] = {}
            for msg, slot in slots.items():
                try:
                    answers[msg] = await slot.wait()
                except ActorCrashed as exc:
                    answers[msg] = exc
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert {m: a for m, a in answers.items() if m != "poison"} == {
        "a": "A", "b": "B", "c": "C", "d": "D"
    }  # fmt: skip
    assert isinstance(answers["poison"], ActorCrashed)
    assert "crashed actor echo (Crash)" in str(answers["poison"])
    # Taken in one wake-up up to the poison; what came before it is not redelivered, what
    # came after it was never taken and goes to the next incarnation; nothing is handled
    # twice.
    first = [(msg, steps) for inc, msg, steps in handled if inc == 1]
    assert [msg for msg, _ in first] == ["a", "b", "poison"]
    assert len({steps for _, steps in first}) == 1
    assert [(inc, msg) for inc, msg, _ in handled if inc != 1] == [(2, "c"), (2, "d")]
    assert sup.child("echo").health.restarts == 1


@pytest.mark.parametrize("lanes", [1, 2])
async def test_a_long_burst_still_lets_other_tasks_run(lanes: int) -> None:
    # Draining is bounded: a reader with thousands of messages waiting yields now and
    # then, so a task that only needs the scheduler (a timer, another actor) runs too.
    mailbox = mailbox_of(lanes, 10_000)
    for n in range(5_000):
        mailbox.send_nowait(f"order-{n}")
    seen_at: list[int] = []
    other_ran = trio.Event()

    async def other() -> None:
        await trio.lowlevel.checkpoint()
        seen_at.append(mailbox.depth)
        other_ran.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        while mailbox.depth:
            await mailbox.receive()
        await other_ran.wait()
    assert seen_at[0] > 4_000  # it ran early in the burst, not after it
