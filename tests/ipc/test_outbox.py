"""Replies finished together leave together: one send for many frames."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from ult_actors.ipc.outbox import Outbox, OutboxBudget


async def test_frames_queued_in_one_scheduler_round_go_out_in_one_send() -> None:
    sender, receiver = trio.testing.memory_stream_pair()
    outbox = Outbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run, sender)
        for i in range(100):
            outbox.put(b"frame%03d" % i)
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
        outbox.close()
    data = b""
    while len(data) < 800:
        data += await receiver.receive_some()
    assert data == b"".join(b"frame%03d" % i for i in range(100))
    assert (outbox.frames_sent, outbox.sends) == (100, 1)


async def test_room_closes_above_the_high_water_mark_and_reopens_once_sent() -> None:
    sender, receiver = trio.testing.lockstep_stream_pair()  # sends block until read
    outbox = Outbox(high_water=10)
    outbox.put(b"x" * 11)
    assert outbox.queued_bytes == 11
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run, sender)
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
            # Taken for sending but not read by the peer: still queued, still no room
            # (a client that does not read must not make room by being written to).
            assert outbox.queued_bytes == 11
            with trio.move_on_after(0.05):
                await outbox.wait_for_room()
                raise AssertionError("room before the bytes were sent")
            assert await receiver.receive_some() == b"x" * 11
            await outbox.wait_for_room()  # sent: room again
            assert outbox.queued_bytes == 0
        nursery.cancel_scope.cancel()


async def test_bytes_count_against_the_shared_budget_until_sent_or_discarded() -> None:
    sender, receiver = trio.testing.lockstep_stream_pair()
    budget = OutboxBudget(cap=15)
    first, second = Outbox(high_water=100, budget=budget), Outbox(high_water=100, budget=budget)
    first.put(b"a" * 10)
    second.put(b"b" * 10)
    assert (budget.queued, budget.over) == (20, True)
    second.discard()  # its connection closed
    assert (budget.queued, budget.over) == (10, False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run, sender)
        with trio.fail_after(5):
            assert await receiver.receive_some() == b"a" * 10
            await trio.testing.wait_all_tasks_blocked()
        assert budget.queued == 0
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def _writing(outbox: Outbox, *, sndbuf: int = 0) -> AsyncIterator[socket.socket]:
    """``outbox`` running on one end of a socket pair, its writer task idle; yields the
    peer's end (a plain socket that never blocks). The outbox is closed on the way out."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    if sndbuf:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outbox.run, stream)
            with trio.fail_after(5):
                await trio.testing.wait_all_tasks_blocked()
            yield theirs
            outbox.close()
    finally:
        theirs.close()


async def test_a_lone_reply_is_written_at_once_without_the_writer_task() -> None:
    outbox = Outbox()
    async with _writing(outbox) as peer:
        outbox.put(b"lone reply", now=True)
        # On the socket before this task yields: nothing waited for the writer task.
        assert peer.recv(100) == b"lone reply"
        assert outbox.queued_bytes == 0
    assert (outbox.frames_sent, outbox.sends) == (1, 1)


async def test_a_reply_behind_queued_frames_waits_its_turn() -> None:
    outbox = Outbox()
    received = b""
    async with _writing(outbox) as peer:
        outbox.put(b"event;")
        outbox.put(b"reply;", now=True)  # must not overtake the event
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
        received = peer.recv(100)
    assert received == b"event;reply;"
    assert (outbox.frames_sent, outbox.sends) == (2, 1)


async def test_what_the_socket_does_not_take_at_once_is_sent_by_the_writer() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: far more than the socket buffer
    outbox = Outbox(high_water=1 << 22)
    received = bytearray()
    async with _writing(outbox, sndbuf=4096) as peer:
        outbox.put(big, now=True)
        assert 0 < outbox.queued_bytes < len(big)  # the rest waits for the writer
        with trio.fail_after(10):
            while len(received) < len(big):
                await trio.lowlevel.wait_readable(peer)
                received.extend(peer.recv(1 << 16))
    assert bytes(received) == big
