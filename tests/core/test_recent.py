"""The bounded ordered dict: what it forgets, in which order, and who hears of it."""

from ult_actors.recent import Recent


def test_put_beyond_the_limit_forgets_the_oldest() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    recent.put("c", 3)
    assert list(recent.items()) == [("b", 2), ("c", 3)]
    assert "a" not in recent and recent.get("a") is None


def test_replacing_keeps_the_place_unless_refreshed() -> None:
    kept: Recent[str, int] = Recent(2)
    refreshed: Recent[str, int] = Recent(2, refresh=True)
    for recent in (kept, refreshed):
        recent.put("a", 1)
        recent.put("b", 2)
        recent.put("a", 10)
        recent.put("c", 3)
    assert list(kept.items()) == [("b", 2), ("c", 3)]
    assert list(refreshed.items()) == [("a", 10), ("c", 3)]


def test_add_says_whether_the_key_was_new() -> None:
    seen: Recent[str, None] = Recent(3)
    assert seen.add("x") is True
    assert seen.add("x") is False
    assert list(seen) == ["x"] and len(seen) == 1


def test_on_evict_hears_each_forgotten_entry_but_not_a_pop() -> None:
    evicted: list[tuple[str, int]] = []
    recent: Recent[str, int] = Recent(2, on_evict=lambda k, v: evicted.append((k, v)))
    for i, key in enumerate("abcd"):
        recent.put(key, i)
    assert recent.pop("d") == 3
    assert recent.pop("d") is None
    assert evicted == [("a", 0), ("b", 1)]
    assert list(recent.values()) == [2]


def test_only_evictable_entries_are_forgotten() -> None:
    recent: Recent[str, str] = Recent(2, evictable=lambda status: status == "filled")
    recent.put("open-1", "new")
    recent.put("done-1", "filled")
    recent.put("open-2", "new")
    assert list(recent) == ["open-1", "open-2"]
    recent.put("open-3", "new")
    assert list(recent) == ["open-1", "open-2", "open-3"]  # nothing may go: it grows


def test_trim_to_forgets_down_to_the_low_mark_once_past_the_limit() -> None:
    recent: Recent[int, int] = Recent(4, trim_to=2)
    for i in range(4):
        recent.put(i, i)
    assert len(recent) == 4
    recent.put(4, 4)
    assert list(recent) == [3, 4]
    recent.trim(1)
    assert list(recent) == [4] and recent[4] == 4
