"""Mailboxes: survival across restarts, deadlines, redelivery, back-pressure."""

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
from ult_actors.runtime.mailbox import (
    ActorCrashed,
    CallTimeout,
    Envelope,
    Mailbox,
    MailboxFull,
    ReplySlot,
    call,
)
from ult_actors.runtime.supervisor import Backoff, ChildSpec, Supervisor


class Echo(msgspec.Struct, frozen=True):
    n: int


class Crash(msgspec.Struct, frozen=True):
    pass


class Slow(msgspec.Struct, frozen=True):
    """Answered after ``s`` seconds by a concurrent handler; ``n < 0`` crashes it then."""

    n: int
    s: float


Msg = Echo | Crash | Slow


def echo_actor(handled: list[tuple[int, int]]) -> Any:
    """Answers Echo with n; crashes on Crash; answers Slow concurrently, after a while."""

    async def start(ctx: ActorContext[Msg]) -> None:
        async def slow(env: Envelope[Msg]) -> None:
            assert isinstance(env.msg, Slow)
            with ctx.handling(env):
                await trio.sleep(env.msg.s)
                if env.msg.n < 0:
                    raise RuntimeError("slow handler crashed")
                handled.append((ctx.incarnation, env.msg.n))
                ctx.reply(env, env.msg.n)

        async with trio.open_nursery() as nursery:

            async def handle(env: Envelope[Msg]) -> None:
                msg = env.msg
                if isinstance(msg, Slow):
                    nursery.start_soon(slow, env)
                    return
                if isinstance(msg, Crash):
                    raise RuntimeError("asked to crash")
                handled.append((ctx.incarnation, msg.n))
                ctx.reply(env, msg.n)

            await serve_mailbox(ctx, handle)

    return start


def tree(mailbox: Mailbox[Msg], handled: list[tuple[int, int]], delay: float) -> Supervisor:
    return Supervisor(
        "root",
        [ChildSpec(id="echo", start=echo_actor(handled), mailbox=mailbox)],
        backoff=Backoff(initial_s=delay, cap_s=delay, multiplier=1.0),
        max_restarts=10,
        rng=random.Random(3),
    )


async def test_messages_queued_during_a_restart_are_handled_by_the_next_incarnation(
    autojump_clock: Any,
) -> None:
    mailbox: Mailbox[Msg] = Mailbox(capacity=100)
    handled: list[tuple[int, int]] = []
    sup = tree(mailbox, handled, delay=5.0)
    results: dict[int, int] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await trio.testing.wait_all_tasks_blocked()
        await mailbox.send(Crash())
        await trio.testing.wait_all_tasks_blocked()
        assert sup.child("echo").health.state == "restarting"

        slots = [ReplySlot() for _ in range(5)]
        for n, slot in enumerate(slots):
            await mailbox.send(Echo(n), reply=slot)
        assert mailbox.depth == 5  # waiting for the next incarnation
        for n, slot in enumerate(slots):
            results[n] = await slot.wait()
        assert results == {n: n for n in range(5)}
        assert handled == [(2, n) for n in range(5)]  # in order, by incarnation 2
        nursery.cancel_scope.cancel()


async def test_a_request_past_its_deadline_gets_a_clear_timeout(autojump_clock: Any) -> None:
    mailbox: Mailbox[Msg] = Mailbox(capacity=100)
    handled: list[tuple[int, int]] = []
    sup = tree(mailbox, handled, delay=10.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await trio.testing.wait_all_tasks_blocked()
        await mailbox.send(Crash())
        with pytest.raises(CallTimeout, match="no answer within 2s"):
            await call(mailbox, Echo(1), timeout=2.0)
        assert await call(mailbox, Echo(2), timeout=30.0) == 2
        assert handled == [(2, 2)]  # the expired request was dropped, not handled late
        assert mailbox.expired == 1
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def echo_tree() -> AsyncIterator[tuple[Mailbox[Msg], list[tuple[int, int]], Supervisor]]:
    """The echo actor running under a supervisor (``max_deliveries`` 3): its mailbox,
    what it handled, and the supervisor."""
    mailbox: Mailbox[Msg] = Mailbox(capacity=100, max_deliveries=3)
    handled: list[tuple[int, int]] = []
    sup = tree(mailbox, handled, delay=0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        yield mailbox, handled, sup
        nursery.cancel_scope.cancel()


async def test_the_request_that_crashed_its_actor_is_answered_and_never_redelivered(
    autojump_clock: Any,
) -> None:
    async with echo_tree() as (mailbox, _handled, sup):
        with pytest.raises(ActorCrashed, match=r"crashed actor echo \(RuntimeError\)"):
            await call(mailbox, Crash(), timeout=10.0)
        assert await call(mailbox, Echo(1)) == 1  # and the actor serves again
        assert sup.child("echo").health.restarts == 1  # one crash, not max_deliveries


async def test_a_concurrent_handler_s_crash_is_its_own_request_s_and_bystanders_are_redelivered(
    autojump_clock: Any,
) -> None:
    async with echo_tree() as (mailbox, handled, sup):
        bystander = ReplySlot()
        await mailbox.send(Slow(7, s=5.0), reply=bystander)  # in flight when the crash comes
        with pytest.raises(ActorCrashed, match="crashed actor echo"):
            await call(mailbox, Slow(-1, s=1.0), timeout=10.0)
        assert await bystander.wait() == 7
        assert handled == [(2, 7)]  # answered by the next incarnation
        assert sup.child("echo").health.restarts == 1


async def test_a_bystander_is_answered_with_the_crash_after_max_deliveries(
    autojump_clock: Any,
) -> None:
    async with echo_tree() as (mailbox, handled, _sup):
        bystander = ReplySlot()
        await mailbox.send(Slow(7, s=100.0), reply=bystander)
        for _ in range(3):
            with pytest.raises(ActorCrashed, match="crashed actor echo"):
                await call(mailbox, Crash(), timeout=10.0)
        with pytest.raises(ActorCrashed, match="crashed 3 times with this request in flight"):
            await bystander.wait()
        assert handled == []


async def test_a_full_mailbox_pushes_back_on_senders() -> None:
    mailbox: Mailbox[Msg] = Mailbox(capacity=2)
    mailbox.send_nowait(Echo(1))
    mailbox.send_nowait(Echo(2))
    with pytest.raises(MailboxFull, match="2 messages"):
        mailbox.send_nowait(Echo(3))
    sent = trio.Event()

    async def blocked_sender() -> None:
        await mailbox.send(Echo(3))
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_sender)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()
        assert (await mailbox.receive()).msg == Echo(1)
        await sent.wait()
    assert mailbox.depth == 2
