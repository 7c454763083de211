"""Smoke test of ``python -m bench.instructions``: what it runs under valgrind answers every order."""

from __future__ import annotations

from bench import instructions


async def test_the_driven_service_answers_every_order_sequential_and_windowed() -> None:
    assert await instructions.drive("seq", 3, 5) == 8
    assert await instructions.drive("window", 2, 40) == 42
    assert await instructions.drive("window", 1, 10, "instant") == 11


def test_steps_are_counted_per_order_by_task() -> None:
    result = instructions.count_steps(20, 5, "instant")
    seq = result["seq"]
    assert seq["rounds"] >= 1 and seq["steps"] >= seq["rounds"]
    # The instant broker answers in process: an order's own task runs the broker's step
    # while a worker is idle, so the broker actor's order workers wake for few, if any.
    workers = seq["by_task"].get("ult_actors.actors.broker._BrokerIncarnation._serve_orders", 0)
    assert workers < 0.5
    assert result["window"]["steps"] > 0


def test_thread_cpu_names_the_durable_files_threads_apart_from_the_loop() -> None:
    result = instructions.thread_cpu(300, 5, "durable")
    for mode in ("seq", "window"):
        by_thread = result[mode]["by_thread"]
        # The loop is named apart, and the journal's threads by their role, not their file.
        assert by_thread["trio"] > 0
        assert not any(":" in name for name in by_thread)
        assert result[mode]["total"] >= by_thread["trio"]
