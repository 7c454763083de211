"""Forward-with-reply and typed calls: a request handed on is answered by the next actor."""

from __future__ import annotations

import importlib
import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.testing

import ult_actors.runtime as runtime
from ult_actors.runtime import ActorContext, Envelope, Mailbox, call, serve_mailbox


def context(name: str, mailbox: Mailbox[Any]) -> ActorContext[Any]:
    return ActorContext(
        name, mailbox, incarnation=1, on_started=lambda: None, on_failed=lambda _e: None
    )


async def test_a_forwarded_request_is_answered_by_the_target_within_the_asker_s_deadline(
    autojump_clock: Any,
) -> None:
    front: Mailbox[str] = Mailbox(capacity=10)
    back: Mailbox[str] = Mailbox(capacity=10)
    deadlines: list[float] = []

    async def relay(env: Envelope[str]) -> None:
        await trio.sleep(1.0)  # some of the asker's time is spent here
        await context("relay", front).forward(env, back, env.msg.upper())
        assert env not in front.in_flight  # the relay is done with it

    async def answer(env: Envelope[str]) -> None:
        deadlines.append(env.deadline)
        context("answer", back).reply(env, f"answered {env.msg}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_mailbox, context("relay", front), relay)
        nursery.start_soon(serve_mailbox, context("answer", back), answer)
        started = trio.current_time()
        assert await call(front, "order", timeout=5.0) == "answered ORDER"
        nursery.cancel_scope.cancel()
    assert deadlines == [pytest.approx(started + 5.0)]


async def test_a_typed_call_checks_the_answer_s_type() -> None:
    mailbox: Mailbox[str] = Mailbox(capacity=10)

    async def handle(env: Envelope[str]) -> None:
        context("echo", mailbox).reply(env, len(env.msg))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_mailbox, context("echo", mailbox), handle)
        assert await call(mailbox, "four", answer=int) == 4
        with pytest.raises(TypeError, match="str was answered with type int, not list"):
            await call(mailbox, "four", answer=list)
        nursery.cancel_scope.cancel()


def test_the_runtime_face_gives_each_public_name_from_its_module() -> None:
    assert sorted(runtime.__all__) == sorted(runtime._HOMES)
    for name, home in runtime._HOMES.items():
        module = importlib.import_module(f"ult_actors.runtime.{home}")
        assert getattr(runtime, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="no attribute 'Actor'"):
        _ = runtime.Actor  # type: ignore[attr-defined]


def test_the_wire_schema_does_not_load_the_runtime() -> None:
    """A client only speaks messages: importing them must not pull in trio or structlog."""
    code = (
        "import sys, ult_actors.messages, ult_actors.client;"
        "print(sorted({'trio', 'structlog'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
