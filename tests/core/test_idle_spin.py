"""``IdleSpin``: when the trio thread's watch for an fdatasync's end or for the loop's I/O
pays for its core, and when the loop sleeps as without one."""

from __future__ import annotations

import time

import pytest

from ult_actors.idle_spin import IdleSpin
from ult_actors.run_delay import open_run_delay


class _Clocks:
    """A wall clock and this thread's CPU clock, moved by the watches: the thread waited for
    its core whatever of the wall clock's time it did not run."""

    def __init__(self) -> None:
        self.wall = 0
        self.cpu = 0

    def off_cpu(self) -> int:
        return self.wall - self.cpu

    def watched(self, wall_ns: int, cpu_ns: int) -> None:
        self.wall += wall_ns
        self.cpu += cpu_ns


class _Watched:
    """Something watched for (an fdatasync, the loop's I/O) whose every watch takes ``wall``
    ns, ``cpu`` of them on the CPU."""

    def __init__(self, clocks: _Clocks, wall: int, cpu: int) -> None:
        self.clocks, self.wall, self.cpu = clocks, wall, cpu
        self.limits: list[int] = []

        self.ends = True  # whether it comes within a watch

    def spin(self, limit_ns: int) -> bool:
        self.limits.append(limit_ns)
        self.clocks.watched(self.wall, self.cpu)
        return self.ends


def test_an_idle_spin_pauses_after_a_watch_that_lost_its_core_then_watches_again() -> None:
    clocks = _Clocks()
    spin = IdleSpin(
        300_000, lost_ns=50_000, pause=3, waited_ns=clocks.off_cpu, off_cpu_ns=clocks.off_cpu
    )
    alone = _Watched(clocks, wall=200_000, cpu=190_000)  # the core its own all along
    for timeout_ns in (10**9, 100_000):
        spin(alone, timeout_ns)
    assert alone.limits == [300_000, 100_000]  # at most its limit, or the loop's next deadline
    crowded = _Watched(clocks, wall=200_000, cpu=120_000)  # 80 us of it to another thread
    for _ in range(5):
        spin(crowded, 10**9)
    # Watched once, then paused for three: the loop slept as without a watch.
    assert crowded.limits == [300_000, 300_000]
    assert (spin.watches, spin.seen) == (4, 4)


def test_an_idle_spin_watches_ever_less_often_while_the_disk_is_slower_than_a_watch() -> None:
    clocks = _Clocks()
    spin = IdleSpin(
        300_000, lost_ns=50_000, pause=4, waited_ns=clocks.off_cpu, off_cpu_ns=clocks.off_cpu
    )
    slow = _Watched(clocks, wall=300_000, cpu=300_000)  # the core its own, the disk slow
    slow.ends = False
    made = []
    for chance in range(20):
        before = len(slow.limits)
        spin(slow, 10**9)
        if len(slow.limits) > before:
            made.append(chance)
    # Watched, then 1, 2, 4, 4, ... chances skipped after each whole watch that saw no end.
    assert made == [0, 2, 5, 10, 15]
    slow.ends = True
    for _ in range(4):
        spin(slow, 10**9)  # the pause runs out; the fdatasync seen to end
    made.clear()
    for _ in range(3):
        before = len(slow.limits)
        spin(slow, 10**9)
        made.append(len(slow.limits) > before)
    assert made == [True, True, True]  # every chance again
    # A watch cut short by the loop's next deadline says nothing of the disk.
    slow.ends = False
    for _ in range(3):
        spin(slow, 100_000)
    assert slow.limits[-3:] == [100_000] * 3


class _Sleeps:
    """A watch that sleeps through its look (as the loop's does while a helper thread has
    the GIL), then sees what it watched for."""

    def __init__(self) -> None:
        self.limits: list[int] = []

    def spin(self, limit_ns: int) -> bool:
        self.limits.append(limit_ns)
        time.sleep(0.05)
        return True


@pytest.mark.skipif(open_run_delay() is None, reason="the kernel tells no run delay here")
def test_a_watch_that_slept_did_not_lose_its_core() -> None:
    # Only the kernel's run delay counts (runnable, another task on the core): 50 ms asleep
    # in a watch is no sign of a busy machine, and the next chance is watched.
    spin = IdleSpin(300_000, lost_ns=20_000_000, pause=4)
    sleeps = _Sleeps()
    try:
        spin(sleeps, 10**9)
        spin(sleeps, 10**9)
    finally:
        spin.close()
    assert sleeps.limits == [300_000, 300_000]


def test_a_watch_on_its_core_throughout_asks_the_kernel_once() -> None:
    # The run delay is read again after a watch only if the thread was off its core for
    # longer than ``lost_ns``: a read is a system call on the way of what the watch saw.
    clocks = _Clocks()
    reads: list[int] = []

    def waited() -> int:
        reads.append(clocks.off_cpu())
        return clocks.off_cpu()

    spin = IdleSpin(300_000, lost_ns=50_000, waited_ns=waited, off_cpu_ns=clocks.off_cpu)
    spin(_Watched(clocks, wall=200_000, cpu=190_000), 10**9)
    assert len(reads) == 1
    spin(_Watched(clocks, wall=200_000, cpu=100_000), 10**9)  # 100 us off its core
    assert len(reads) == 3


def test_what_came_soon_after_a_skipped_chance_ends_the_back_off_not_a_pause_for_the_core() -> (
    None
):
    clocks = _Clocks()
    spin = IdleSpin(
        300_000, lost_ns=50_000, pause=8, waited_ns=clocks.off_cpu, off_cpu_ns=clocks.off_cpu
    )
    quiet = _Watched(clocks, wall=300_000, cpu=300_000)
    quiet.ends = False
    for _ in range(6):
        spin(quiet, 10**9)  # watched, 1 skipped, watched, 2 skipped, watched: 4 to skip
    assert len(quiet.limits) == 3
    spin.came_soon()  # a burst: the loop woke within a watch's limit after a skip
    spin(quiet, 10**9)
    assert len(quiet.limits) == 4
    spin.came_soon()  # (that watch saw nothing either: one chance to skip, ended)
    crowded = _Watched(clocks, wall=200_000, cpu=100_000)  # 100 us waiting for a core
    spin(crowded, 10**9)
    assert len(crowded.limits) == 1
    spin.came_soon()
    for _ in range(9):
        spin(crowded, 10**9)
    assert len(crowded.limits) == 2  # the pause for the core stood: 8 chances skipped
