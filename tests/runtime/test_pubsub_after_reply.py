"""Events held for a reply (``AfterReply``): published once the reply is written, in
order, and before anything could read them; held only by a task that writes replies."""

from __future__ import annotations

import trio
import trio.testing

from ult_actors.runtime.pubsub import AfterReply, EventBus


async def test_a_task_holds_events_only_once_it_has_written_a_reply() -> None:
    bus: EventBus[int] = EventBus()
    folded: list[int] = []
    bus.subscribe().fold_inline(folded.append)
    after = AfterReply.of_this_run()
    assert after is AfterReply.of_this_run()  # one per run
    assert not after.holds()  # off the request path: published at once
    after.written(at_once=True)
    assert after.holds()
    after.publish(bus, 1)
    after.publish(bus, 2)
    assert folded == []
    after.written(at_once=True)
    assert folded == [1, 2]
    assert bus.published == 2

    async def another_task() -> None:
        assert not after.holds()  # not the writer: its steps publish at once

    async with trio.open_nursery() as nursery:
        nursery.start_soon(another_task)


async def test_held_events_go_out_before_anything_that_could_read_them() -> None:
    bus: EventBus[int] = EventBus()
    folded: list[int] = []
    bus.subscribe().fold_inline(folded.append)
    reader = bus.subscribe()
    after = AfterReply.of_this_run()
    after.written(at_once=True)

    after.publish(bus, 1)
    bus.publish(2)  # a later event, from anywhere: the held one first
    assert folded == [1, 2]

    after.publish(bus, 3)
    assert reader.drain() == [1, 2, 3]  # a subscriber's read takes them first

    after.publish(bus, 4)
    with trio.fail_after(1):
        assert await reader.receive() == 4  # as does one that would wait
    bus.release_held()  # nothing held: nothing happens
    assert folded == [1, 2, 3, 4]
    after.written(at_once=True)
    assert folded == [1, 2, 3, 4]  # each once


async def test_a_task_whose_replies_are_queued_together_holds_nothing() -> None:
    # Replies of a window go out together, later: holding their events would only cost.
    bus: EventBus[int] = EventBus()
    folded: list[int] = []
    bus.subscribe().fold_inline(folded.append)
    after = AfterReply.of_this_run()
    after.written(at_once=True)
    after.publish(bus, 1)
    after.written(at_once=False)  # this reply was queued: what was held goes out
    assert folded == [1]
    assert not after.holds()
    after.written(at_once=True)  # a lone request again
    assert after.holds()
