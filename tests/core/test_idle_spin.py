"""``IdleSpin``: when the trio thread's watch for an fdatasync's end or for the loop's I/O
pays for its core, and when the loop sleeps as without one."""

from __future__ import annotations

from ult_actors.idle_spin import IdleSpin


class _Clocks:
    """A wall clock and this thread's CPU clock, moved by the watches."""

    def __init__(self) -> None:
        self.wall = 0
        self.cpu = 0

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
        300_000, lost_ns=50_000, pause=3, wall_ns=lambda: clocks.wall, cpu_ns=lambda: clocks.cpu
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
        300_000, lost_ns=50_000, pause=4, wall_ns=lambda: clocks.wall, cpu_ns=lambda: clocks.cpu
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
