"""The requests of one read: answered one after another by the task that read them, no
request held up by another's wait, bad frames and split frames as anywhere else."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import msgspec
import trio
import trio.testing

from tests.fakes import FakeVenue
from tests.ipc.harness import ipc_service
from tests.ipc.rawconn import RawConnection
from ult_actors.ipc.framing import ReplyCodec, frame
from ult_actors.messages import ErrorReply, OkReply, OrderReply, OrderRequest, Ping, Reply, Submit

_POOL_TASK = "ult_actors.ipc.taskpool.TaskPool._work"


class _ConnectionSteps(trio.abc.Instrument):
    """Task steps taken by the connection's tasks (those of its task pool)."""

    def __init__(self) -> None:
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == _POOL_TASK:
            self.steps += 1


def _pings(first: int, count: int) -> bytes:
    codec = ReplyCodec()
    return b"".join(codec.encode(Ping(id=i)) for i in range(first, first + count))


async def _replies(conn: RawConnection, count: int) -> list[Reply]:
    return [await conn.receive() for _ in range(count)]


async def _connection_up(path: Path) -> RawConnection:
    """A connection whose tasks are up (one ping answered), with the service idle."""
    conn = await RawConnection.open(path)
    await conn.send(Ping(id=1))
    await conn.receive()
    await trio.testing.wait_all_tasks_blocked()
    return conn


@contextmanager
def _counting_steps() -> Iterator[_ConnectionSteps]:
    steps = _ConnectionSteps()
    trio.lowlevel.add_instrument(steps)
    try:
        yield steps
    finally:
        trio.lowlevel.remove_instrument(steps)


async def test_the_requests_of_one_read_are_answered_without_a_task_wake_up_each(
    sock_dir: Path,
) -> None:
    async with ipc_service(sock_dir) as (_svc, path):
        with trio.fail_after(10):
            conn = await _connection_up(path)
            with _counting_steps() as steps:
                # One write: the server reads the hundred frames in one read.
                await conn.send_raw(_pings(2, 100))
                replies = await _replies(conn, 100)
                await trio.testing.wait_all_tasks_blocked()
        assert sorted(r.id for r in replies if isinstance(r, OkReply)) == list(range(2, 102))
        # The task that read them answers them all in its step; one other task is woken
        # to take over should an answer wait, and one takes the next reading turn. Each
        # request its own task wake-up was 100 steps and more.
        assert steps.steps <= 6, steps.steps
        await conn.aclose()


async def test_a_lone_request_answered_at_once_costs_its_connection_one_task_step(
    sock_dir: Path,
) -> None:
    async with ipc_service(sock_dir) as (_svc, path):
        with trio.fail_after(10):
            conn = await _connection_up(path)
            with _counting_steps() as steps:
                replies = []
                for i in range(2, 22):
                    await conn.send(Ping(id=i))
                    replies.append(await conn.receive())
                    await trio.testing.wait_all_tasks_blocked()
        assert [r.id for r in replies if isinstance(r, OkReply)] == list(range(2, 22))
        # The task that read each ping answered it and went on to read the next: no
        # other task was woken to read meanwhile (that was 40 steps).
        assert steps.steps == 20, steps.steps
        await conn.aclose()


async def test_a_request_whose_answer_waits_holds_up_none_of_the_requests_read_with_it(
    sock_dir: Path,
) -> None:
    venue = FakeVenue()
    venue.submit_gate = trio.Event()  # the broker holds the submit
    order = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="slow-2")
    async with ipc_service(sock_dir, venue) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(10):
            await conn.send(Ping(id=1), Submit(id=2, order=order), Ping(id=3), Ping(id=4))
            before = await _replies(conn, 3)
            venue.submit_gate.set()
            submitted = await conn.receive()
        assert sorted((r.id, type(r)) for r in before) == [(1, OkReply), (3, OkReply), (4, OkReply)]
        assert isinstance(submitted, OrderReply) and submitted.id == 2
        assert submitted.order.client_order_id == "slow-2"
        await conn.aclose()


async def test_a_bad_frame_amid_one_read_is_answered_and_so_is_the_rest_of_the_read(
    sock_dir: Path,
) -> None:
    bad = frame(msgspec.msgpack.encode({"kind": "teleport", "id": 11}))
    async with ipc_service(sock_dir) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(10):
            await conn.send_raw(_pings(1, 10) + bad + _pings(12, 10))
            replies = await _replies(conn, 21)
            await conn.send(Ping(id=22))  # the connection serves on
            after = await conn.receive()
        errors = [r for r in replies if isinstance(r, ErrorReply)]
        assert [(e.id, e.error.code) for e in errors] == [(11, "bad_request")]
        answered = sorted(r.id for r in replies if isinstance(r, OkReply))
        assert answered == [*range(1, 11), *range(12, 22)]
        assert isinstance(after, OkReply) and after.id == 22
        await conn.aclose()


async def test_a_read_ending_inside_a_frame_answers_the_whole_ones_and_keeps_the_part(
    sock_dir: Path,
) -> None:
    last = _pings(11, 1)
    async with ipc_service(sock_dir) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(10):
            await conn.send_raw(_pings(1, 10) + last[:3])  # the header not even whole
            first = await _replies(conn, 10)
            await trio.testing.wait_all_tasks_blocked()
            await conn.send_raw(last[3:])
            rest = await conn.receive()
        assert sorted(r.id for r in first if isinstance(r, OkReply)) == list(range(1, 11))
        assert isinstance(rest, OkReply) and rest.id == 11
        await conn.aclose()


async def test_a_closed_intake_leaves_new_requests_unread_until_it_opens(sock_dir: Path) -> None:
    # The journal's fold too far behind closes the service's intake (``runtime/intake.py``):
    # the socket reads no new requests meanwhile, and answers them once it opens.
    async with ipc_service(sock_dir) as (svc, path):
        store = await svc.journal.get()
        intake = svc.journal.intake
        # One gate: the journal the service opened closes the one the socket reads.
        assert store.intake is intake and svc.gateway.intake is intake
        with trio.fail_after(10):
            conn = await _connection_up(path)
            peer = socket.socket(fileno=socket.dup(conn.stream.socket.fileno()))
            try:
                intake.close()
                await conn.send(Ping(id=2))  # the read already waiting takes it
                assert (await conn.receive()).id == 2
                await conn.send(Ping(id=3))
                await trio.testing.wait_all_tasks_blocked()
                try:
                    unread = peer.recv(1 << 16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    unread = b""
                assert unread == b""  # not read, so not answered
                intake.open()
                reply = await conn.receive()
            finally:
                peer.close()
        assert isinstance(reply, OkReply) and reply.id == 3
        await conn.aclose()
