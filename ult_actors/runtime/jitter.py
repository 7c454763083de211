"""Backoff jitter seeded up front, its generator made on the first draw.

A ``random.Random`` carries 2.5 KB of state (the Mersenne Twister's 624
words). A service with a thousand broker connections gave each its own for
the retry jitter of submits that fail, which most never need: 2.5 MB for
draws that may never come. ``SeededJitter`` takes its seed when the service
is built (so the root generator's draws, and every later seed, are as
before) and makes the generator only when a delay is first drawn; its
draws equal those of ``random.Random(seed)``.
"""

from __future__ import annotations

import random
from typing import Protocol


class Jitter(Protocol):
    """What a backoff draws its random delays from (a ``random.Random`` is one)."""

    def uniform(self, a: float, b: float) -> float:
        """A number between ``a`` and ``b``."""
        ...


class SeededJitter:
    """``random.Random(seed)``'s ``uniform``, its generator made on the first draw."""

    __slots__ = ("_rng", "_seed")

    def __init__(self, seed: float) -> None:
        self._seed = seed
        self._rng: random.Random | None = None

    def uniform(self, a: float, b: float) -> float:
        """A number between ``a`` and ``b``, as ``random.Random(seed).uniform`` draws it."""
        rng = self._rng
        if rng is None:
            rng = self._rng = random.Random(self._seed)
        return rng.uniform(a, b)
