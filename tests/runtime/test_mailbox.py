"""Mailboxes: survival across restarts, deadlines, redelivery, back-pressure."""

from __future__ import annotations

import random
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


class CrashOnce(msgspec.Struct, frozen=True):
    n: int


Msg = Echo | Crash | CrashOnce


def echo_actor(handled: list[tuple[int, int]]) -> Any:
    """Answers Echo with n; crashes on Crash; crashes on CrashOnce's first delivery."""

    async def start(ctx: ActorContext[Msg]) -> None:
        async def handle(env: Envelope[Msg]) -> None:
            msg = env.msg
            if isinstance(msg, Crash):
                raise RuntimeError("asked to crash")
            if isinstance(msg, CrashOnce) and env.deliveries == 1:
                raise RuntimeError("crash on first delivery")
            assert isinstance(msg, Echo | CrashOnce)
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


async def test_a_request_in_flight_during_a_crash_is_redelivered(autojump_clock: Any) -> None:
    mailbox: Mailbox[Msg] = Mailbox(capacity=100)
    handled: list[tuple[int, int]] = []
    sup = tree(mailbox, handled, delay=0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        assert await call(mailbox, CrashOnce(7), timeout=10.0) == 7
        assert handled == [(2, 7)]
        assert sup.child("echo").health.restarts == 1
        nursery.cancel_scope.cancel()


async def test_a_poison_request_is_answered_with_the_crash_after_max_deliveries(
    autojump_clock: Any,
) -> None:
    mailbox: Mailbox[Msg] = Mailbox(capacity=100, max_deliveries=3)
    handled: list[tuple[int, int]] = []
    sup = tree(mailbox, handled, delay=0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        with pytest.raises(ActorCrashed, match="asked to crash"):
            await call(mailbox, Crash(), timeout=10.0)
        assert await call(mailbox, Echo(1)) == 1  # and the actor serves again
        assert sup.child("echo").health.restarts == 3
        nursery.cancel_scope.cancel()


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
