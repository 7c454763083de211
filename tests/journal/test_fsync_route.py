"""Where a ``full`` journal writes a lone batch: on the trio thread while that thread runs
again promptly after its fsync, else on the writer's thread, trying the trio thread again now
and then."""

from __future__ import annotations

import pytest

from ult_actors.journal import fsync_route
from ult_actors.journal.fsync_route import FsyncRoute


class Counter:
    """Stands in for the kernel's figure of the trio thread's time waiting to run, or for
    a clock: a test moves it."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def route_batches(
    route: FsyncRoute,
    delay: Counter,
    waits_us: int,
    n: int,
    *,
    clock: Counter | None = None,
    took_us: int = 0,
) -> str:
    """Route ``n`` lone batches; one written on the trio thread waits ``waits_us`` to run
    after its fsync (and moves ``clock`` by ``took_us``). The ways, L (the trio thread) or
    T (the writer's thread), in order."""
    ways = ""
    for _ in range(n):
        if route.choose():

            def write() -> None:
                delay.ns += waits_us * 1000
                if clock is not None:
                    clock.ns += took_us * 1000

            route.write_here(write)
            ways += "L"
        else:
            ways += "T"
    return ways


def test_lone_batches_stay_on_the_trio_thread_while_it_runs_again_promptly() -> None:
    # A clock of its own (each write takes no time): on the real one, a write preempted
    # past 1 ms on a loaded machine counts as a slow disk.
    delay = Counter()
    route = FsyncRoute(probe_every=8, late_ns=100_000, run_delay_ns=delay, now_ns=Counter())
    assert route_batches(route, delay, 20, 12) == "LLLLLLLLLLLL"


def test_a_trio_thread_that_runs_late_after_its_fsyncs_hands_them_over_and_is_tried_again() -> None:
    delay = Counter()  # and a clock of its own, as above
    route = FsyncRoute(
        window=8, probe_every=8, late_ns=100_000, run_delay_ns=delay, now_ns=Counter()
    )
    assert route_batches(route, delay, 20, 3) == "LLL"
    # The machine's cores get busy: the trio thread waits 3 ms to run after each fsync.
    # Once more than a quarter of its last waits are that long, the writer's thread takes
    # the lone batches; every 8th is tried on the trio thread again.
    assert route_batches(route, delay, 3_000, 21) == "LTTTLTTTTTTTLTTTTTTTL"
    assert (route.loop_writes, route.thread_writes) == (7, 17)
    # Quiet again: the tries find it prompt, and once three quarters of its last 8 waits
    # are short (7 tries) it keeps the batches again.
    assert route_batches(route, delay, 20, 60) == "TTTTTTTL" * 7 + "LLLL"


def test_a_slow_disk_keeps_the_trio_thread_free_of_the_writes() -> None:
    delay, clock = Counter(), Counter()
    route = FsyncRoute(probe_every=8, slow_ns=1_000_000, run_delay_ns=delay, now_ns=clock)
    assert route_batches(route, delay, 0, 4, clock=clock, took_us=200) == "LLLL"
    # The disk takes 5 ms an fsync: the loop would serve nobody meanwhile. The trio thread
    # runs again at once, yet the writer's thread takes the batches, bar a try every 8th.
    assert route_batches(route, delay, 0, 12, clock=clock, took_us=5_000) == "LLTLTTTTTTTL"


def test_without_the_kernels_figures_every_batch_goes_to_the_writers_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fsync_route, "open_run_delay", lambda: None)
    route = FsyncRoute()
    assert [route.choose() for _ in range(3)] == [False, False, False]


def test_an_unreadable_kernel_figure_fails_no_write_and_ends_the_trio_threads_turn() -> None:
    def unreadable() -> int:
        raise OSError(5, "Input/output error")

    route = FsyncRoute(run_delay_ns=unreadable)
    written: list[int] = []
    assert route.choose() is True
    route.write_here(lambda: written.append(1))
    assert written == [1]
    assert [route.choose() for _ in range(3)] == [False, False, False]


def test_without_the_loop_every_lone_batch_goes_to_the_writers_thread() -> None:
    delay = Counter()
    route = FsyncRoute(probe_every=2, run_delay_ns=delay, use_loop=False)
    assert route_batches(route, delay, 0, 6) == "TTTTTT"
