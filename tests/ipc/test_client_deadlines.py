"""``AsyncClient``'s per-request timeouts with many requests in flight on one connection:
each ends at its own deadline, whatever the order the requests came in, whoever reads
the socket, and while the connection's writer waits for room to send."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.ipc.test_async_client import scripted_server
from ult_actors.client import AsyncClient, OutcomeUnknown
from ult_actors.messages import Request, Submit

Send = Callable[[bytes], Awaitable[None]]


async def test_each_waiting_request_times_out_at_its_own_deadline(
    sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def hold_submits(request: Request, reply: bytes, send: Send) -> None:
        if not isinstance(request, Submit):
            await send(reply)

    path = sock_dir / "held.sock"
    ended: dict[str, float] = {}
    async with scripted_server(path, hold_submits), AsyncClient(path, timeout=60) as client:

        async def submit(coid: str, timeout: float) -> None:
            with pytest.raises(OutcomeUnknown) as info:
                await client.submit("AAPL", "buy", 1, client_order_id=coid, timeout=timeout)
            assert info.value.client_order_id == coid
            ended[coid] = trio.current_time() - started

        with trio.fail_after(100):
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                # The first reads the socket for itself; the later, shorter ones wait
                # for it to read their replies.
                for coid, timeout in (("long", 30.0), ("short", 5.0), ("middle", 10.0)):
                    nursery.start_soon(submit, coid, timeout)
                    await trio.testing.wait_all_tasks_blocked()
                await trio.sleep(1)
                await client.ping()  # answered while all three wait
            await client.ping()  # and after
    assert ended == {
        "short": pytest.approx(5),
        "middle": pytest.approx(10),
        "long": pytest.approx(30),
    }
    assert client.unmatched_replies == 0


async def test_a_request_answered_in_time_is_not_cut_by_an_earlier_ones_deadline(
    sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def answer_late(request: Request, reply: bytes, send: Send) -> None:
        if isinstance(request, Submit) and request.order.client_order_id == "late":
            await trio.sleep(20)  # the server answers nothing else meanwhile
        await send(reply)

    path = sock_dir / "late.sock"
    async with scripted_server(path, answer_late), AsyncClient(path, timeout=60) as client:
        outcome: dict[str, object] = {}

        async def submit(coid: str, timeout: float) -> None:
            try:
                outcome[coid] = await client.submit(
                    "AAPL", "buy", 1, client_order_id=coid, timeout=timeout
                )
            except OutcomeUnknown:
                outcome[coid] = "timed out"

        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit, "late", 30.0)  # answered at 20 s
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(submit, "impatient", 5.0)  # answered at 20 s too
            await client.ping()  # reads the impatient one's answer, if nothing has yet
    assert outcome["impatient"] == "timed out"
    late = outcome["late"]
    assert not isinstance(late, str) and late.client_order_id == "late"
    assert client.unmatched_replies == 1  # the impatient one's answer, after it gave up


async def test_a_request_times_out_while_the_writer_waits_for_room_and_the_rest_go_through(
    sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # The server stops reading at the first submit until 10 s have passed, so the
    # submits sent after it fill the socket and the connection's writer waits for room
    # when the first one's deadline (5 s) ends it: ending that wait must not break the
    # writer's.
    reading = trio.Event()

    async def stall_then_answer(request: Request, reply: bytes, send: Send) -> None:
        if isinstance(request, Submit) and request.order.client_order_id == "first":
            await reading.wait()
            return  # never answered
        await send(reply)

    # More than the kernel's default send buffer holds (~200 bytes a submit).
    queued = math.ceil(4 * _default_send_buffer() / 200)
    path = sock_dir / "stalled.sock"
    answered: list[str] = []
    first_ended: list[float] = []
    async with scripted_server(path, stall_then_answer), AsyncClient(path, timeout=60) as client:

        async def first() -> None:
            with pytest.raises(OutcomeUnknown):
                await client.submit("AAPL", "buy", 1, client_order_id="first", timeout=5)
            first_ended.append(trio.current_time() - started)

        async def submit(coid: str) -> None:
            order = await client.submit("AAPL", "buy", 1, client_order_id=coid)
            answered.append(order.client_order_id or "")

        with trio.fail_after(100):
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(first)  # alone: it reads the socket for itself
                await trio.testing.wait_all_tasks_blocked()
                for n in range(queued):
                    nursery.start_soon(submit, f"queued-{n}")
                await trio.sleep(10)
                reading.set()
            await client.ping()
    assert first_ended == [pytest.approx(5)]
    assert sorted(answered) == sorted(f"queued-{n}" for n in range(queued))


def _default_send_buffer() -> int:
    try:
        return int(Path("/proc/sys/net/core/wmem_default").read_text())
    except OSError:
        return 1 << 18
