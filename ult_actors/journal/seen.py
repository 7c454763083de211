"""The journal's filter of client order ids ever journaled: "never" for sure, or "maybe".

A module of its own so that the compiled build can compile it (``compiled.py``):
its Python integer operations run for every order a fold writes (on the fold's
thread) and for every new submit (``lacks``, on the trio thread).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ult_actors.mypyc_hints import i64


class SeenFilter:
    """A Bloom filter of client order ids: "never journaled" for sure, or "maybe".

    Fixed size, so memory stays bounded however many orders the journal
    holds; as it fills, more "maybe" answers send a lookup to the file (never
    a wrong answer). Python's string hash is stable within a process and the
    filter is rebuilt from the file on every open, so no hash is persisted.
    """

    __slots__ = ("_bits", "_mask")

    _mask: i64

    # Four bit positions per id (written out in ``add_all`` and ``__contains__``); with
    # the default 2**26 bits, 10 million ids give about 1 false "maybe" in 40 and 1
    # million ids about 1 in 100,000.

    def __init__(self, bits: int) -> None:
        size = 1 << max(3, (bits - 1).bit_length())  # a power of two: masking, not modulo
        self._bits = bytearray(size // 8)
        self._mask = size - 1

    def add_all(self, keys: Iterable[str]) -> None:
        """Add every key of ``keys``."""
        bits = self._bits
        mask: i64 = self._mask
        for key in keys:
            # Double hashing on two masked halves of the hash, as machine integers (``i64``):
            # compiled, a string's hash is a 64-bit number that a tagged integer holds only
            # boxed, each operation on it then a call (twelve boxings a key before, ~2.9k
            # instructions a key in all). The step is odd, so the positions differ. A byte is
            # written back only if its bit was not set; the four positions written out, not
            # looped over (this runs for every order a fold writes). The same positions as
            # ``int`` arithmetic gives, pure or compiled: the low bits of a negative hash
            # are its two's complement's either way. A byte's index is boxed once, for its
            # read and its write (``at: Any``; an index past 256 is a new ``int`` object each
            # time it is boxed), and the byte read is typed (``byte: int``), so that its bit
            # operations stay native.
            h: i64 = hash(key)
            pos: i64 = h & mask
            step: i64 = ((h >> 32) & mask) | 1
            at: Any = int(pos >> 3)
            byte: int = bits[at]
            bit = int(1 << (pos & 7))
            if not byte & bit:
                bits[at] = byte | bit
            pos = (pos + step) & mask
            at = int(pos >> 3)
            byte = bits[at]
            bit = int(1 << (pos & 7))
            if not byte & bit:
                bits[at] = byte | bit
            pos = (pos + step) & mask
            at = int(pos >> 3)
            byte = bits[at]
            bit = int(1 << (pos & 7))
            if not byte & bit:
                bits[at] = byte | bit
            pos = (pos + step) & mask
            at = int(pos >> 3)
            byte = bits[at]
            bit = int(1 << (pos & 7))
            if not byte & bit:
                bits[at] = byte | bit

    def add(self, key: str) -> None:
        """Add ``key``."""
        self.add_all((key,))

    def __contains__(self, key: str) -> bool:
        """``False``: ``key`` was never added; ``True``: it may have been."""
        bits = self._bits
        mask: i64 = self._mask
        h: i64 = hash(key)
        pos: i64 = h & mask
        # Nearly every new id misses on its first position: answered before the rest.
        if not bits[int(pos >> 3)] & int(1 << (pos & 7)):
            return False
        step: i64 = ((h >> 32) & mask) | 1
        pos = (pos + step) & mask
        if not bits[int(pos >> 3)] & int(1 << (pos & 7)):
            return False
        pos = (pos + step) & mask
        if not bits[int(pos >> 3)] & int(1 << (pos & 7)):
            return False
        pos = (pos + step) & mask
        return bool(bits[int(pos >> 3)] & int(1 << (pos & 7)))

    @property
    def nbytes(self) -> int:
        """The filter's size in memory."""
        return len(self._bits)
