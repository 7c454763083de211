"""Event fan-out: a subscriber wakes once per round for every event published in it,
in order; a slow subscriber is still dropped without slowing the publisher."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ult_actors.runtime.pubsub import EventBus


async def test_a_subscriber_wakes_once_for_a_round_of_events_and_gets_them_in_order() -> None:
    bus: EventBus[int] = EventBus()
    evens = bus.subscribe(lambda n: n % 2 == 0)
    every = bus.subscribe()
    batches: list[list[int]] = []
    wake_ups = 0

    class Count(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal wake_ups
            wake_ups += task is reader

    async def read() -> None:
        while True:
            batches.append(await every.receive_batch())

    counter = Count()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        reader = next(t for t in nursery.child_tasks if t.name.endswith("read"))
        trio.lowlevel.add_instrument(counter)
        for n in range(10):  # one round of publishing: the reader is not run in between
            bus.publish(n)
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.remove_instrument(counter)
        nursery.cancel_scope.cancel()
    assert batches == [list(range(10))]
    assert wake_ups == 1
    assert evens.drain() == [0, 2, 4, 6, 8]  # each subscriber its own filter and queue


async def test_a_subscriber_that_falls_behind_is_dropped_and_reads_what_was_queued() -> None:
    bus: EventBus[int] = EventBus()
    slow = bus.subscribe(capacity=3)
    keeping_up = bus.subscribe(capacity=100)
    for n in range(5):
        bus.publish(n)  # never waits, whoever lags
    assert slow.dropped_reason == "subscriber fell behind: 3 events queued and unread"
    assert bus.subscriber_count == 1
    assert await slow.receive_batch() == [0, 1, 2]
    with pytest.raises(trio.EndOfChannel):
        await slow.receive_batch()
    assert await keeping_up.receive_batch() == [0, 1, 2, 3, 4]


async def test_closing_wakes_a_waiting_reader_which_ends_after_what_was_queued() -> None:
    bus: EventBus[str] = EventBus()
    sub = bus.subscribe()
    got: list[list[str]] = []

    async def read() -> None:
        while True:
            try:
                got.append(await sub.receive_batch())
            except trio.EndOfChannel:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        bus.publish("a")
        bus.publish("b")
        sub.close()
        bus.publish("c")  # after the close: not delivered
    assert got == [["a", "b"]]


async def test_a_subscriber_folding_inline_takes_events_in_the_publisher_s_step() -> None:
    bus: EventBus[int] = EventBus()
    folded: list[int] = []
    sub = bus.subscribe(lambda n: n > 0)
    bus.publish(1)  # queued before folding began: read first, order kept
    sub.fold_inline(folded.append)
    bus.publish(2)
    assert folded == [] and sub.queued == 2
    assert sub.drain() == [1, 2]
    bus.publish(3)
    bus.publish(-1)  # not accepted
    assert folded == [3] and sub.queued == 0  # no reader ran: folded as published


async def test_an_event_the_inline_fold_raises_on_goes_to_the_reader_and_folding_stops() -> None:
    bus: EventBus[int] = EventBus()
    folded: list[int] = []
    sub = bus.subscribe()

    def fold(n: int) -> None:
        if n == 2:
            raise ZeroDivisionError("a bug")
        folded.append(n)

    sub.fold_inline(fold)
    bus.publish(1)
    bus.publish(2)  # the publisher does not see the bug
    bus.publish(3)
    assert folded == [1]
    assert await sub.receive_batch() == [2, 3]  # the reader's actor meets it in its own step


async def test_iterating_takes_one_event_at_a_time_and_a_loop_left_early_leaves_the_rest() -> None:
    bus: EventBus[int] = EventBus()
    sub = bus.subscribe()
    for n in range(3):
        bus.publish(n)
    taken = []
    async for event in sub:
        taken.append(event)
        break
    assert taken == [0]
    assert sub.drain() == [1, 2]  # not taken by the loop, so still there for the next read
    bus.publish(3)
    sub.close()
    assert [n async for n in sub] == [3]  # then the iteration ends
