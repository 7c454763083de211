"""Event fan-out by type: a subscriber names the event types it takes (``kinds``) and
gets those only (subclasses too), in publication order, with its own filter on top;
one subscribing or leaving after events were routed changes where the next one goes."""

from __future__ import annotations

from ult_actors.runtime.pubsub import EventBus


class Fill(int):
    """A subtype of ``int``: a subscriber of ints gets it too."""


async def test_a_subscriber_gets_only_the_event_types_it_names_in_order() -> None:
    bus: EventBus[object] = EventBus()
    ints = bus.subscribe(kinds=(int,))
    big_ints = bus.subscribe(lambda n: isinstance(n, int) and n > 1, kinds=(int,))
    texts = bus.subscribe(kinds=(str, bytes))
    everything = bus.subscribe()
    published: list[object] = [1, "a", Fill(2), b"b", 3.5, 3]
    for event in published:
        bus.publish(event)
    assert ints.drain() == [1, Fill(2), 3]
    assert big_ints.drain() == [Fill(2), 3]
    assert texts.drain() == ["a", b"b"]
    assert everything.drain() == published


async def test_subscribing_and_leaving_after_events_were_routed_moves_the_next_ones() -> None:
    bus: EventBus[object] = EventBus()
    first = bus.subscribe(kinds=(int,))
    bus.publish(1)
    bus.publish("a")
    later = bus.subscribe(kinds=(int,))
    anything = bus.subscribe()
    bus.publish(2)
    bus.publish("b")
    first.close()
    bus.publish(3)
    anything.close()
    bus.publish("c")
    assert first.drain() == [1, 2]
    assert later.drain() == [2, 3]
    assert anything.drain() == [2, "b", 3]
    assert bus.subscriber_count == 1


async def test_a_subscriber_that_falls_behind_leaves_the_routes_of_every_type() -> None:
    bus: EventBus[object] = EventBus()
    slow = bus.subscribe(capacity=2)
    keeping_up = bus.subscribe(capacity=100, kinds=(int, str))
    for event in (1, "a", 2, "b"):  # the third event is one too many for ``slow``
        bus.publish(event)
    assert slow.dropped_reason == "subscriber fell behind: 2 events queued and unread"
    assert slow.drain() == [1, "a"]
    assert keeping_up.drain() == [1, "a", 2, "b"]
    assert bus.subscriber_count == 1
