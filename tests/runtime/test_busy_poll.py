"""The loop's busy poll: about to sleep, the trio loop watches its own I/O a while, so what
arrives meanwhile is taken in the watch; never past the loop's next deadline, one a run,
with the limit the service is configured with, and gone with the service."""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.service_harness import one_broker_config, served
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.client import Client
from ult_actors.idle_spin import IdleSpin
from ult_actors.runtime.busy_poll import BusyPoll, LoopPoll, busy_polling, loop_epoll_fd
from ult_actors.service import build_service


async def test_the_loops_epoll_is_found() -> None:
    # Trio keeps its epoll to itself; the busy poll reads it from one private attribute.
    # If this fails, trio's insides moved and the service's busy poll is off.
    fd = loop_epoll_fd()
    assert fd is not None
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"


async def test_where_the_loops_epoll_cannot_be_had_the_loop_sleeps_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trio._core._run import GLOBAL_RUN_CONTEXT

    with monkeypatch.context() as patched:  # no await inside: the loop never sees it
        patched.setattr(GLOBAL_RUN_CONTEXT.runner, "io_manager", object())  # insides moved
        found = loop_epoll_fd()
        with busy_polling(200_000) as running:
            pass
    assert found is None and running is None


class _Told(LoopPoll):
    """The real watch, telling another thread each time it begins."""

    def __init__(self, epoll_fd: int, begun: threading.Event) -> None:
        super().__init__(epoll_fd)
        self.begun = begun

    def spin(self, limit_ns: int) -> bool:
        self.begun.set()
        return super().spin(limit_ns)


async def test_a_message_that_arrives_while_the_loop_watches_is_taken_in_the_watch() -> None:
    fd = loop_epoll_fd()
    assert fd is not None
    begun = threading.Event()
    # A watch as long as the test may take, on a core of its own whatever the machine does.
    poll = BusyPoll(_Told(fd, begun), IdleSpin(60 * 10**9, lost_ns=10**15))
    theirs, mine = socket.socketpair()

    def send_once_the_loop_watches() -> None:
        if begun.wait(30):
            theirs.send(b"x")

    sender = threading.Thread(target=send_once_the_loop_watches, daemon=True)
    with theirs, trio.socket.from_stdlib_socket(mine) as ours:
        trio.lowlevel.add_instrument(poll)
        try:
            sender.start()
            with trio.fail_after(30):
                assert await ours.recv(1) == b"x"
        finally:
            trio.lowlevel.remove_instrument(poll)
            sender.join(30)
    # The loop began to watch with the socket waited for, and saw it ready: it never slept.
    assert (poll.spin.watches, poll.spin.seen) == (1, 1)


class _Limits:
    """A watch that sees nothing and notes its limits."""

    def __init__(self) -> None:
        self.limits: list[int] = []

    def spin(self, limit_ns: int) -> bool:
        self.limits.append(limit_ns)
        return False


async def test_a_watch_never_runs_past_the_loops_next_deadline() -> None:
    watched = _Limits()
    poll = BusyPoll(watched, IdleSpin(60 * 10**9))
    trio.lowlevel.add_instrument(poll)
    try:
        await trio.sleep(0.005)
    finally:
        trio.lowlevel.remove_instrument(poll)
    assert watched.limits
    assert all(0 < limit <= 5_000_000 for limit in watched.limits)


async def test_busy_polling_is_one_a_run_shared_and_gone_with_its_last_user() -> None:
    with busy_polling(200_000) as first:
        assert first is not None and first.spin.limit_ns == 200_000
        with busy_polling(500_000) as second:
            assert second is first and first.users == 2  # the first one's limit
        with busy_polling(0) as off:
            assert off is None and first.users == 1  # 0 asks for none, joins none
    with pytest.raises(KeyError):
        trio.lowlevel.remove_instrument(first)  # removed with its last user
    with busy_polling(300_000) as again:
        assert again is not None and again is not first and again.spin.limit_ns == 300_000


@contextmanager
def _socket_dir() -> Iterator[Path]:
    short = Path(tempfile.mkdtemp(prefix="ultbp", dir="/tmp"))  # sun_path: 108 bytes
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.mark.parametrize("busy_poll_us", [300, 0])
async def test_a_service_polls_with_its_configured_limit_while_it_runs(
    tmp_path: Path, busy_poll_us: int
) -> None:
    settings = PaperSettings(tick_interval_s=0, state_path=str(tmp_path / "paper.db"))
    config = one_broker_config(tmp_path, "paper", settings)
    config.service.busy_poll_us = busy_poll_us
    svc = build_service(config, env={}, rng=random.Random(5))
    with _socket_dir() as sock_dir:
        async with served(svc, sock_dir):
            with busy_polling(1_000) as running:  # joins the service's, if it has one
                if busy_poll_us:
                    assert running is not None and running.users == 2
                    assert running.spin.limit_ns == busy_poll_us * 1_000
                else:
                    assert running is not None and running.users == 1  # this block's own

            def submit_one_after_another() -> list[str]:
                # A caller on a thread of its own: the loop idles between its orders.
                with Client(sock_dir / "s", timeout=30) as client:
                    return [client.submit("AAPL", "buy", Decimal(1)).status for _ in range(20)]

            assert await trio.to_thread.run_sync(submit_one_after_another) == ["filled"] * 20
    with busy_polling(1_000) as after:
        assert after is not None and after.users == 1  # the service's went with it


class _Quiet:
    """A watch that sees nothing, its limit as long as it takes (the clock moved by it)."""

    def __init__(self, clock: list[int]) -> None:
        self.clock = clock
        self.watches = 0

    def spin(self, limit_ns: int) -> bool:
        self.watches += 1
        self.clock[0] += limit_ns
        return False


def test_a_burst_after_a_quiet_spell_is_watched_again_from_its_second_wake() -> None:
    clock = [0]
    quiet = _Quiet(clock)
    spin = IdleSpin(200_000, waited_ns=lambda: 0, off_cpu_ns=lambda: 0)
    poll = BusyPoll(quiet, spin, clock_ns=lambda: clock[0])
    for _ in range(40):  # a quiet spell: the loop wakes for its timers, 1 s apart
        poll.before_io_wait(1.0)
        clock[0] += 10**9
        poll.after_io_wait(1.0)
    backed_off = quiet.watches
    assert backed_off < 10  # 1, 2, 4 ... chances skipped after each watch that saw nothing
    # A burst: a request arrives 100 us into the loop's sleep, a chance it skipped.
    poll.before_io_wait(1.0)
    clock[0] += 100_000
    poll.after_io_wait(1.0)
    poll.before_io_wait(1.0)
    assert quiet.watches == backed_off + 1  # the next chance is watched
