"""The journal's filter of client order ids: never a wrong "never", positions as ``int`` gives."""

from __future__ import annotations

from ult_actors.journal.seen import SeenFilter


def _reference_bits(keys: list[str], bits: int) -> bytearray:
    """The filter's bytes after adding ``keys``, with Python's ``int`` arithmetic (the
    positions a compiled filter's machine integers must give too)."""
    size = 1 << max(3, (bits - 1).bit_length())
    mask = size - 1
    out = bytearray(size // 8)
    for key in keys:
        h = hash(key)
        pos, step = h & mask, ((h >> 32) & mask) | 1
        for _ in range(4):
            out[pos >> 3] |= 1 << (pos & 7)
            pos = (pos + step) & mask
    return out


def test_every_added_id_may_have_been_seen_and_the_bits_are_ints_own() -> None:
    keys = [f"cl-{i}" for i in range(5000)] + ["", "é-ü", "x" * 300]
    seen = SeenFilter(1 << 16)
    seen.add_all(keys[:100])
    for key in keys[100:]:
        seen.add(key)
    assert all(key in seen for key in keys)
    assert seen._bits == _reference_bits(keys, 1 << 16)
    # Not full: most ids never added are answered "never" (false "maybe"s are rare).
    others = [f"other-{i}" for i in range(5000)]
    assert sum(key in seen for key in others) < 250


def test_a_filter_of_any_size_is_a_power_of_two_bits() -> None:
    for bits, nbytes in [(1, 1), (64, 8), (65, 16), (1 << 20, 1 << 17)]:
        seen = SeenFilter(bits)
        assert seen.nbytes == nbytes
        seen.add_all(["a", "b"])
        assert "a" in seen and "b" in seen
