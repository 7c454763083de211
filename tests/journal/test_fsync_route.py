"""Where a ``full`` journal writes a lone batch: on the trio thread while its writes there take
no longer than the writer thread's plus the hand-overs they save, with the other way tried now
and then."""

from __future__ import annotations

from ult_actors.journal.fsync_route import FsyncRoute


def route_batches(route: FsyncRoute, took_us: dict[bool, int], n: int) -> str:
    """Route ``n`` lone batches whose writes take ``took_us[on_loop]``; the ways, L (the trio
    thread) or T (the writer's thread), in order."""
    ways = ""
    for _ in range(n):
        on_loop = route.choose()
        route.took(on_loop, took_us[on_loop] * 1000)
        ways += "L" if on_loop else "T"
    return ways


def test_each_way_is_tried_once_then_the_faster_is_taken_and_the_other_probed() -> None:
    route = FsyncRoute(probe_every=8, saved_ns=100_000)
    # The trio thread waits a time slice after its fsync (a busy machine): the writer's wins.
    assert route_batches(route, {True: 3_000, False: 300}, 16) == "LTTTTTTLTTTTTTTL"
    assert (route.loop_writes, route.thread_writes) == (3, 13)


def test_the_trio_thread_keeps_lone_batches_while_it_is_late_by_less_than_the_hand_overs() -> None:
    route = FsyncRoute(probe_every=8, saved_ns=100_000)
    # The same fsync either way, the trio thread's 60 us later: it still saves 40 us.
    assert route_batches(route, {True: 210, False: 150}, 16) == "LTLLLLLTLLLLLLLT"


def test_when_the_trio_threads_writes_turn_slow_lone_batches_move_to_the_writers_thread() -> None:
    route = FsyncRoute(window=8, probe_every=1000, saved_ns=100_000)
    assert route_batches(route, {True: 150, False: 150}, 10) == "LTLLLLLLLL"
    # The machine's cores get busy: the trio thread runs 3 ms after its fsync. Once half of
    # its last 8 writes are slow (the upper median), the writer's thread takes the batches.
    assert route_batches(route, {True: 3_000, False: 150}, 8) == "LLLLTTTT"


def test_without_the_loop_every_lone_batch_goes_to_the_writers_thread() -> None:
    route = FsyncRoute(probe_every=2, use_loop=False)
    assert route_batches(route, {True: 1, False: 3_000}, 6) == "TTTTTT"
