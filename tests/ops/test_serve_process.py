"""``ult serve`` as systemd runs it: a process talking to a notify socket the test owns."""

from __future__ import annotations

import signal

import trio

from tests.ops.notify_listener import NotifyListener
from tests.ops.serve_process import Serve, clean_env, short_dir


async def test_ult_serve_sends_ready_status_periodic_watchdog_and_stopping() -> None:
    with short_dir() as home, NotifyListener() as listener:
        env = clean_env(
            home,
            NOTIFY_SOCKET=listener.address,
            WATCHDOG_USEC="1000000",  # WatchdogSec=1s: a ping every 0.5 s
        )
        args = ["--socket", str(home / "ult.sock"), "--state-dir", str(home / "state"),
                "--log-format", "json"]
        serve = await Serve.start(args, env, home / "serve.log")
        try:
            with trio.fail_after(60):
                ready = await serve.ready_or_exit(listener)
            assert ready is not None, serve.text()
            # The embedded paper broker is the whole tree's only broker by default.
            assert ready["STATUS"] == "brokers 1/1 up; 0 open orders; trading active"
            assert (home / "ult.sock").exists()  # READY comes after the socket is open

            with trio.fail_after(30):
                for _ in range(3):
                    await listener.wait_for("WATCHDOG", "1")

            with trio.fail_after(30):
                code = await serve.stop()
            assert code == 0, serve.text()  # SIGTERM is a clean stop: no Restart=on-failure
            listener.drain()
            assert listener.messages[-1] == {"STOPPING": "1", "STATUS": "stopping"}
            assert '"signal": "SIGTERM"' in serve.text()
        finally:
            await serve.abort()


async def test_a_watchdog_kill_leaves_the_stuck_stack_in_the_log() -> None:
    # systemd kills a service that stops pinging with SIGABRT (WatchdogSignal=).
    with short_dir() as home, NotifyListener() as listener:
        env = clean_env(home, NOTIFY_SOCKET=listener.address)
        args = ["--socket", str(home / "ult.sock"), "--state-dir", str(home / "state")]
        serve = await Serve.start(args, env, home / "serve.log")
        try:
            with trio.fail_after(60):
                assert await serve.ready_or_exit(listener) is not None, serve.text()
            serve.process.send_signal(signal.SIGABRT)
            with trio.fail_after(30):
                code = await serve.process.wait()
            assert code == -signal.SIGABRT
            log = serve.text()
            assert "Fatal Python error: Aborted" in log
            assert "Current thread" in log and 'File "' in log  # the event loop's stack
        finally:
            await serve.abort()


async def test_sighup_is_logged_and_ignored_and_the_service_keeps_answering() -> None:
    from ult_actors.client import AsyncClient

    with short_dir() as home, NotifyListener() as listener:
        env = clean_env(home, NOTIFY_SOCKET=listener.address)
        socket = home / "ult.sock"
        args = ["--socket", str(socket), "--state-dir", str(home / "state"),
                "--log-format", "json"]
        serve = await Serve.start(args, env, home / "serve.log")
        try:
            with trio.fail_after(60):
                assert await serve.ready_or_exit(listener) is not None, serve.text()
            serve.process.send_signal(signal.SIGHUP)
            with trio.fail_after(30):
                async with AsyncClient(socket, timeout=20) as client:
                    await client.ping()
                    orders = await client.orders()
            assert orders == []
            assert serve.process.returncode is None
            with trio.fail_after(30):
                code = await serve.stop()
            assert code == 0, serve.text()
            assert serve.text().count("SIGHUP ignored") == 1
            assert not socket.exists()  # a clean stop removes the socket
        finally:
            await serve.abort()
