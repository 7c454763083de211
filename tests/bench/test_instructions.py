"""Smoke test of ``python -m bench.instructions``: what it runs under valgrind answers every order."""

from __future__ import annotations

from bench import instructions


async def test_the_driven_service_answers_every_order_sequential_and_windowed() -> None:
    assert await instructions.drive("seq", 3, 5) == 8
    assert await instructions.drive("window", 2, 40) == 42
    assert await instructions.drive("window", 1, 10, "instant") == 11
