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


def _replay(seed: int, limit: int, refresh: bool, *, as_set: bool) -> None:
    """Random puts (or adds, ``as_set``), pops and repeats against an ``OrderedDict`` doing
    the same by hand: the same entries in the same order, the same ones forgotten."""
    import random
    from collections import OrderedDict

    rng = random.Random(seed)
    evicted: list[tuple[int, int | None]] = []
    expected_evicted: list[tuple[int, int | None]] = []
    recent: Recent[int, int | None] = Recent(
        limit, refresh=refresh, on_evict=lambda k, v: evicted.append((k, v))
    )
    model: OrderedDict[int, int | None] = OrderedDict()
    for step in range(3000):
        key = rng.randrange(3 * limit)  # a small key space: many repeats, many re-adds
        if rng.random() < 0.2:
            assert recent.pop(key) == model.pop(key, None)
            continue
        value = None if as_set else step
        if as_set:
            assert recent.add(key) is (key not in model)  # type: ignore[arg-type]
        else:
            recent.put(key, value)
        if refresh and key in model:
            model.move_to_end(key)
        if not as_set or key not in model:
            model[key] = value
        while len(model) > limit:
            expected_evicted.append(model.popitem(last=False))
        assert list(recent.items()) == list(model.items())
    assert evicted == expected_evicted
    # What it lists to find the oldest stays within a bound of what it holds.
    assert len(recent._order) <= 2 * limit + 32 + 1


def test_forgets_in_the_order_a_reference_ordered_dict_does() -> None:
    for seed in range(4):
        for limit in (1, 5, 40):
            for refresh in (False, True):
                _replay(seed, limit, refresh, as_set=False)
                _replay(seed, limit, refresh, as_set=True)


def test_a_key_refreshed_again_and_again_keeps_its_listing_bounded() -> None:
    recent: Recent[str, None] = Recent(10, refresh=True)
    for key in "abc":
        recent.add(key)
    for _ in range(10_000):
        recent.add("a")
        recent.add("b")
    assert list(recent) == ["c", "a", "b"]
    assert len(recent._order) <= 2 * 3 + 32
