"""Mailbox lanes: urgent messages are read first and are never blocked by a full lane."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ult_actors.runtime.mailbox import Mailbox, ReplySlot


def lane_of(msg: str) -> int:
    return {"cancel": 0, "query": 1}.get(msg.split("-")[0], 2)


def lanes_mailbox(capacity: int = 3) -> Mailbox[str]:
    return Mailbox(capacity, lanes=3, lane_of=lane_of)


async def test_each_lane_is_read_before_the_next_whatever_the_arrival_order() -> None:
    mailbox = lanes_mailbox()
    for msg in ["order-1", "query-1", "order-2", "cancel-1", "query-2"]:
        await mailbox.send(msg)
    assert mailbox.depth == 5
    got = [(await mailbox.receive()).msg for _ in range(5)]
    assert got == ["cancel-1", "query-1", "query-2", "order-1", "order-2"]


async def test_a_full_lane_blocks_neither_the_senders_nor_the_reader_of_another() -> None:
    mailbox = lanes_mailbox(capacity=2)
    await mailbox.send("order-1")
    await mailbox.send("order-2")
    with pytest.raises(trio.TooSlowError), trio.fail_after(0.05):
        await mailbox.send("order-3")  # that lane is full: its sender waits
    with trio.fail_after(1):
        await mailbox.send("query-1")  # this one is not
        assert (await mailbox.receive(lanes=(0, 1))).msg == "query-1"


class WakeUps(trio.abc.Instrument):
    """Counts the scheduler steps of tasks running ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += task.name.endswith(self.name)


async def test_a_reader_of_some_lanes_waits_for_them_only() -> None:
    mailbox = lanes_mailbox(capacity=8)
    got: list[str] = []
    wake_ups = WakeUps("read_urgent")

    async def read_urgent() -> None:
        got.append((await mailbox.receive(lanes=(0, 1))).msg)

    trio.lowlevel.add_instrument(wake_ups)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_urgent)
        await trio.testing.wait_all_tasks_blocked()
        started = wake_ups.count
        for n in range(5):
            await mailbox.send(f"order-{n}")
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # orders do not wake it into taking them, nor at all
        assert wake_ups.count == started
        await mailbox.send("cancel-1")
    trio.lowlevel.remove_instrument(wake_ups)
    assert got == ["cancel-1"]
    assert [mailbox.receive_nowait(lanes=(2,)).msg for _ in range(5)] == [
        f"order-{n}" for n in range(5)
    ]
    with pytest.raises(trio.WouldBlock):
        mailbox.receive_nowait()


async def test_a_requeued_request_goes_back_to_the_head_of_its_own_lane() -> None:
    mailbox = lanes_mailbox()
    await mailbox.send("order-1", reply=ReplySlot())
    await mailbox.send("order-2", reply=ReplySlot())
    taken = await mailbox.receive()
    assert taken.msg == "order-1"
    await mailbox.send("query-1", reply=ReplySlot())
    assert mailbox.requeue_in_flight(RuntimeError("crash")) == 1
    got = [(await mailbox.receive()).msg for _ in range(3)]
    assert got == ["query-1", "order-1", "order-2"]


async def test_several_readers_of_a_lane_wake_one_per_message_and_miss_none() -> None:
    mailbox = lanes_mailbox(capacity=2)
    got: list[str] = []
    wake_ups = WakeUps("worker")
    hold = trio.Event()

    async def worker() -> None:
        while True:
            got.append((await mailbox.receive(lanes=(2,))).msg)
            await hold.wait()  # busy with it, as a broker's order worker is

    trio.lowlevel.add_instrument(wake_ups)
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        started = wake_ups.count
        await mailbox.send("order-1")
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["order-1"]
        assert wake_ups.count == started + 1  # the other three slept on
        for n in range(2, 8):  # more than the lane holds: senders wait for room
            nursery.start_soon(mailbox.send, f"order-{n}")
        await trio.testing.wait_all_tasks_blocked()
        assert len(got) == 4 and mailbox.depth == 2  # each worker took one; two wait
        hold.set()  # all busy until now: the queued ones and those let in go to them
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    trio.lowlevel.remove_instrument(wake_ups)
    assert sorted(got) == [f"order-{n}" for n in range(1, 8)]
