"""The loop's busy poll: before the trio loop sleeps, it watches its own I/O a while.

A client that submits one order after another sends the next some tens of
microseconds after it read its answer. By then the loop, with nothing to run,
sleeps in ``epoll_wait``, and on a virtual machine the request wakes it through
the host: its virtual CPU halted and woken, its caches cold. That, not the
order's instructions, was most of a sequential order's time past the floor's
(docs/performance.md, "the loop's busy poll").

So, about to sleep, the loop first watches whether its epoll has anything
ready, for up to ``[service] busy_poll_us`` and never past its next deadline:
``poll(2)`` on the epoll's own descriptor, which tells whether any descriptor
in it is ready without taking trio's events or disarming them. What arrives
meanwhile (a client's request, a broker's answer, a helper thread's word for
the loop) is handled with no sleep and no wake-up. Linux does the same below
the process with its haltpoll cpuidle governor (off on this project's hosts:
``guest_halt_poll_ns=0``) and ``net.core.busy_poll``.

``IdleSpin`` decides when that pays, with a pause of ``PAUSE`` chances: a
watch that sees nothing arrive backs off (1, 2, 4 ... up to 8 sleeps without
one), so a service nobody calls watches once in 9 sleeps (an idle paper
service sleeps about once a second), and the loop, having skipped a watch,
woken by I/O within a watch's limit (a burst after a quiet spell) watches
again at once. A watch during which another task had the core while this
thread could have run (the kernel's run delay, not the GIL's waits: each look
lets the GIL go, and a helper thread's turn says nothing of the cores) pauses
it for 8, so a core others want gets at most one watch in 9 from it.

Trio keeps its epoll to itself: ``loop_epoll_fd`` reads it from trio's run
context, the one private attribute of trio the service reads. It checks that
it is an epoll, and where there is none to read (another system, or a trio
whose insides moved) the loop sleeps as before; ``tests/runtime/test_busy_poll.py``
fails then, so an upgrade cannot lose it silently.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable, Iterator

import structlog
import trio

from ult_actors.idle_spin import IdleSpin, Watched

#: The chances skipped after a watch that lost its core, and at most after watches that
#: saw nothing. Not the journal's 64: the loop's watches are short, and what takes its core
#: is mostly its own helper threads (the fold, the log writer), which the kernel lets
#: preempt a spinning thread at once; with 64, 7-24 such watches in 4,000 sequential
#: orders left 10-35 % of them unwatched (docs/performance.md, "the loop's busy poll").
PAUSE = 8


def loop_epoll_fd() -> int | None:
    """The running trio loop's epoll descriptor, or None where there is none to read."""
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT
    except ImportError:
        return None
    io_manager = getattr(getattr(GLOBAL_RUN_CONTEXT, "runner", None), "io_manager", None)
    epoll: object = getattr(io_manager, "_epoll", None)
    fileno = getattr(epoll, "fileno", None)
    if not callable(fileno):
        return None
    fd = fileno()
    if not isinstance(fd, int):
        return None
    try:
        return fd if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]" else None
    except OSError:
        return None


class LoopPoll:
    """``Watched``: whether the loop's epoll has anything ready, by ``poll(2)`` on it."""

    def __init__(self, epoll_fd: int) -> None:
        self._poll = select.poll()
        self._poll.register(epoll_fd, select.POLLIN)

    def spin(self, limit_ns: int) -> bool:
        poll, clock = self._poll.poll, time.perf_counter_ns
        end = clock() + limit_ns
        while not poll(0):
            if clock() >= end:
                return False
        return True


class BusyPoll(trio.abc.Instrument):
    """The loop's busy poll as a trio instrument: ``watched`` watched by ``spin`` each
    time the loop is about to sleep (``busy_polling`` adds one to the run)."""

    def __init__(
        self,
        watched: Watched,
        spin: IdleSpin,
        *,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        self.watched = watched
        self.spin = spin
        #: The services of this run that asked for it (it is removed with the last).
        self.users = 0
        self._clock_ns = clock_ns
        self._skipped_until = 0  # a chance skipped: a wake before this, a watch would have seen

    def before_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            spin = self.spin
            watches = spin.watches
            timeout_ns = int(timeout * 1e9)
            spin(self.watched, timeout_ns)
            if spin.watches == watches:
                self._skipped_until = self._clock_ns() + min(spin.limit_ns, timeout_ns)

    def after_io_wait(self, timeout: float) -> None:
        # The first orders of a burst after a quiet spell find the watch backed off: the
        # loop woken by I/O (before its deadline) within a watch's limit says it pays again.
        if self._skipped_until:
            if self._clock_ns() < self._skipped_until:
                self.spin.came_soon()
            self._skipped_until = 0


_RUNNING: trio.lowlevel.RunVar[BusyPoll | None] = trio.lowlevel.RunVar(
    "ult_busy_poll", default=None
)


@contextlib.contextmanager
def busy_polling(limit_ns: int) -> Iterator[BusyPoll | None]:
    """The loop's busy poll while the block runs, watching up to ``limit_ns`` a sleep;
    None (no busy poll) with ``limit_ns`` 0 or where the loop's epoll cannot be had.

    One a run: the services of one run share the first one's (a test runs many)."""
    if limit_ns <= 0:  # asks for none, and joins none
        yield None
        return
    running = _RUNNING.get()
    if running is None:
        fd = loop_epoll_fd()
        if fd is None:
            yield None
            return
        running = BusyPoll(LoopPoll(fd), IdleSpin(limit_ns, pause=PAUSE))
        trio.lowlevel.add_instrument(running)
        _RUNNING.set(running)
    running.users += 1
    try:
        yield running
    finally:
        running.users -= 1
        if not running.users:
            _RUNNING.set(None)
            running.spin.close()
            # What it bought, for an operator weighing its core against it.
            structlog.get_logger().bind(actor="ult").info(
                "the loop's busy poll ends",
                limit_us=running.spin.limit_ns // 1_000,
                watches=running.spin.watches,
                saw_io=running.spin.seen,
            )
            # Trio drops an instrument that raised: nothing is left to remove then.
            with contextlib.suppress(KeyError):
                trio.lowlevel.remove_instrument(running)
