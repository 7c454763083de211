"""The collector's settings once the service is ready: start-up frozen, cycles still collected."""

from __future__ import annotations

import gc
import weakref

import pytest

from ult_actors.collector import (
    AGE_UNWALKED_ABOVE,
    OLDER_THRESHOLDS,
    STARTING_YOUNG_THRESHOLD,
    YOUNG_THRESHOLD,
    hold_while_starting,
    release_frozen,
    settle_after_start,
)


class Node:
    """A container that can sit in a reference cycle and be weakly referenced."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """A two-node cycle nobody else holds: only the collector can free it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


# The settings are the process's (run_service settles them once ready).
pytestmark = pytest.mark.usefixtures("collector_restored")


def test_a_cycle_made_after_start_up_is_still_collected_without_being_asked() -> None:
    settle_after_start()
    gone = cycle()
    # Enough new containers to pass the young threshold: the collector runs by itself.
    keep = [[] for _ in range(YOUNG_THRESHOLD * 2)]
    assert gone() is None
    del keep


def test_start_up_s_objects_are_left_alone_until_released() -> None:
    held = cycle()
    node = held()
    assert node is not None
    settle_after_start()  # ``node`` is alive here: frozen with the rest of start-up
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert held() is not None, "a frozen cycle is not walked by the collector"
    release_frozen()
    gc.collect()
    assert held() is None


def test_a_start_holds_the_young_collections_back_and_gives_the_thresholds_back() -> None:
    before = gc.get_threshold()
    release = hold_while_starting()
    assert gc.get_threshold() == (STARTING_YOUNG_THRESHOLD, *before[1:])
    release()
    assert gc.get_threshold() == before
    release()  # twice: nothing more
    assert gc.get_threshold() == before


def test_starts_at_once_give_the_thresholds_back_when_the_last_is_up() -> None:
    before = gc.get_threshold()
    first, second = hold_while_starting(), hold_while_starting()
    first()
    assert gc.get_threshold()[0] == STARTING_YOUNG_THRESHOLD, "the second still starts"
    second()
    assert gc.get_threshold() == before


def test_a_settled_collector_is_left_as_settled_when_a_start_lets_go() -> None:
    release = hold_while_starting()
    settle_after_start()  # another service of the process is ready meanwhile
    release()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)


def test_what_a_start_built_is_aged_unwalked_when_it_lets_go() -> None:
    release = hold_while_starting()
    built = [Node() for _ in range(AGE_UNWALKED_ABOVE + 1_000)]
    assert gc.get_count()[0] > AGE_UNWALKED_ABOVE, "young while the start holds the collector"
    walked: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            walked.append(info["generation"])

    gc.callbacks.append(note)
    try:
        release()
        more = [Node() for _ in range(1_000)]  # past CPython's young threshold once again
    finally:
        gc.callbacks.remove(note)
    # In the oldest generation without a pass over them: the young one starts afresh.
    assert gc.is_tracked(built[0])
    assert any(node is built[0] for node in gc.get_objects(generation=2))
    assert all(generation == 0 for generation in walked)
    del more


def test_a_cycle_a_start_made_is_still_collected_by_a_full_pass() -> None:
    release = hold_while_starting()
    gone = cycle()
    built = [Node() for _ in range(AGE_UNWALKED_ABOVE + 1_000)]
    release()
    assert gone() is not None, "no pass walked it on the way"
    gc.collect()
    assert gone() is None
    del built


def test_a_small_start_is_walked_by_a_young_pass_as_before() -> None:
    release = hold_while_starting()
    gone = cycle()
    release()
    keep = [[] for _ in range(1_000)]  # past CPython's young threshold
    assert gone() is None
    del keep


def test_nothing_frozen_is_given_back_when_a_start_lets_go() -> None:
    held = cycle()
    node = held()
    settle_after_start()  # another service of the process is ready: ``node`` frozen with it
    frozen = gc.get_freeze_count()
    del node
    release = hold_while_starting()
    built = [Node() for _ in range(AGE_UNWALKED_ABOVE + 1_000)]
    release()
    assert gc.get_freeze_count() == frozen
    gc.collect()
    assert held() is not None, "still frozen"
    del built
