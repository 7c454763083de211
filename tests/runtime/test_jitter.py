"""Backoff jitter seeded when the service is built, its generator made on the first draw."""

from __future__ import annotations

import random
import sys

from ult_actors.runtime.jitter import Jitter, SeededJitter


def test_seeded_jitter_draws_what_a_random_of_its_seed_draws() -> None:
    seed = random.Random(5).random()
    jitter, plain = SeededJitter(seed), random.Random(seed)
    bounds = [(0.0, 0.2), (0.0, 0.4), (1.0, 3.0), (0.0, 5.0)] * 5
    assert [jitter.uniform(a, b) for a, b in bounds] == [plain.uniform(a, b) for a, b in bounds]


def test_seeded_jitter_costs_little_until_its_first_draw() -> None:
    # A thousand connections' jitter, never drawn, is not a thousand Mersenne Twisters.
    jitter = SeededJitter(0.5)
    assert sys.getsizeof(jitter) < sys.getsizeof(random.Random(0.5)) // 20
    first = jitter.uniform(0.0, 1.0)
    assert first == random.Random(0.5).uniform(0.0, 1.0)


def test_a_random_is_a_jitter() -> None:
    used: Jitter = random.Random(3)  # tests and callers may still hand one in
    assert 0.0 <= used.uniform(0.0, 1.0) <= 1.0
