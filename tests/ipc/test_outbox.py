"""Replies finished together leave together: one send for many frames."""

from __future__ import annotations

import trio
import trio.testing

from ult_actors.ipc.outbox import Outbox


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
            await outbox.wait_for_room()  # taken for sending: room again
            assert await receiver.receive_some() == b"x" * 11
        nursery.cancel_scope.cancel()
