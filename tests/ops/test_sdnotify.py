"""The sd_notify protocol: addresses, environment handling, failures that must not hurt."""

from __future__ import annotations

import itertools
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import trio
from structlog.testing import capture_logs

from ult_actors.systemd.notify import (
    Notifier,
    feed_watchdog,
    notifier_from_env,
    notify_address,
    watchdog_interval,
)
from ult_actors.testing.notify import NotifyListener


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_a_path_is_used_as_is_and_an_at_sign_means_the_abstract_namespace() -> None:
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@/org/freedesktop/systemd1/notify/42") == (
        b"\0/org/freedesktop/systemd1/notify/42"
    )
    assert notify_address("vsock:2:1234") is None
    assert notify_address("@") is None


def test_without_a_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    env: dict[str, str] = {}
    notifier = notifier_from_env(env)
    assert not notifier.enabled
    assert notifier.ready("up") is False
    assert notifier.watchdog() is False
    assert notifier.sent == 0


async def test_messages_reach_a_path_socket_as_key_value_lines() -> None:
    with NotifyListener() as listener:
        env = {"NOTIFY_SOCKET": listener.address, "PATH": "/usr/bin"}
        notifier = notifier_from_env(env)
        assert notifier.ready("brokers 1/1 up\nsecond line")
        assert notifier.stopping()
        with trio.fail_after(5):
            ready = await listener.next()
            stopping = await listener.next()
        # STATUS is forced onto one line whatever the caller passed.
        assert ready == {"READY": "1", "STATUS": "brokers 1/1 up second line"}
        assert stopping == {"STOPPING": "1"}
        notifier.close()


async def test_messages_reach_an_abstract_socket() -> None:
    with NotifyListener(abstract=True) as listener:
        assert listener.address.startswith("@")
        notifier = notifier_from_env({"NOTIFY_SOCKET": listener.address})
        assert notifier.watchdog()
        with trio.fail_after(5):
            assert await listener.next() == {"WATCHDOG": "1"}
        notifier.close()


def test_the_notify_variables_are_removed_so_child_processes_do_not_inherit_them() -> None:
    env = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
        "HOME": "/nonexistent",
    }
    notifier_from_env(env)
    assert watchdog_interval(env) == 15.0  # half of WatchdogSec
    assert env == {"HOME": "/nonexistent"}


def test_a_watchdog_meant_for_another_process_is_not_fed() -> None:
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    assert watchdog_interval(env, pid=4242) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, pid=4242) == 15
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=4242) == 15
    assert watchdog_interval({}, pid=4242) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid=4242) is None


def test_a_missing_socket_is_logged_once_and_the_service_carries_on() -> None:
    short = Path(tempfile.mkdtemp(prefix="ultn", dir="/tmp"))
    path = short / "notify"
    with capture_logs() as logs:
        notifier = Notifier(str(path))
        assert [notifier.watchdog() for _ in range(3)] == [False, False, False]
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert len(warnings) == 1
        assert "FileNotFoundError" in warnings[0]["error"]

        # systemd comes back (a daemon-reexec, say): messages flow again, and we say so.
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(path))
        try:
            assert notifier.watchdog()
            assert receiver.recv(100) == b"WATCHDOG=1\n"
        finally:
            receiver.close()
            notifier.close()
            os.unlink(path)
            short.rmdir()
    assert [e["event"] for e in logs][-1] == "systemd notify socket reachable again"


async def test_watchdog_pings_come_every_half_interval_and_stop_while_unhealthy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    healthy = True
    with NotifyListener() as listener, capture_logs() as logs:
        notifier = Notifier(listener.address)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed_watchdog, notifier, 5.0, lambda: healthy)
            with trio.fail_after(60):
                stamps = []
                for _ in range(3):
                    await listener.wait_for("WATCHDOG")
                    stamps.append(trio.current_time())
            assert [b - a for a, b in itertools.pairwise(stamps)] == [
                pytest.approx(5.0),
                pytest.approx(5.0),
            ]

            healthy = False
            await trio.sleep(60)  # twelve intervals of an unhealthy tree
            assert listener.drain() == []
            assert any(e["event"].startswith("not healthy") for e in logs)

            healthy = True
            with trio.fail_after(6):
                await listener.wait_for("WATCHDOG")
            nursery.cancel_scope.cancel()
        notifier.close()
