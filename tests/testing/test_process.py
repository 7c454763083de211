"""The one launcher: ``ult`` as a real process, ready by notify socket, by socket ping or by port."""

from __future__ import annotations

import signal
import sys

import pytest
import trio

from ult_actors.client import AsyncClient, Client
from ult_actors.testing.process import UltProcess, run_ult, short_dir, ult_command


async def test_ult_serve_sends_ready_status_periodic_watchdog_and_stopping() -> None:
    with short_dir() as home:
        # WatchdogSec=1s: a ping every 0.5 s
        serve = UltProcess.serve(home, env={"WATCHDOG_USEC": "1000000"}, clean=True)
        try:
            await serve.astart(timeout=60)
            assert serve.ready is not None, serve.log
            # The embedded paper broker is the whole tree's only broker by default.
            assert serve.ready["STATUS"] == "brokers 1/1 up; 0 open orders; trading active"
            assert serve.socket is not None and serve.socket.exists()  # READY after the socket

            with trio.fail_after(30):
                for _ in range(3):
                    await serve.notice("WATCHDOG", "1")

            with trio.fail_after(30):
                code = await serve.astop()
            assert code == 0, serve.log  # SIGTERM is a clean stop: no Restart=on-failure
            assert serve.notices[-1] == {"STOPPING": "1", "STATUS": "stopping"}
            assert '"signal": "SIGTERM"' in serve.log
        finally:
            serve.cleanup()


async def test_a_watchdog_kill_leaves_the_stuck_stack_in_the_log() -> None:
    # systemd kills a service that stops pinging with SIGABRT (WatchdogSignal=).
    with short_dir() as home:
        serve = UltProcess.serve(home, clean=True)
        try:
            await serve.astart(timeout=60)
            serve.signal(signal.SIGABRT)
            with trio.fail_after(30):
                code = await serve.await_exit()
            assert code == -signal.SIGABRT
            log = serve.log
            assert "Fatal Python error: Aborted" in log
            assert "Current thread" in log and 'File "' in log  # the event loop's stack
        finally:
            serve.cleanup()


async def test_sighup_is_logged_and_ignored_and_the_service_keeps_answering() -> None:
    with short_dir() as home:
        serve = UltProcess.serve(home, clean=True)
        try:
            await serve.astart(timeout=60)
            serve.signal(signal.SIGHUP)
            assert serve.socket is not None
            with trio.fail_after(30):
                async with AsyncClient(serve.socket, timeout=20) as client:
                    await client.ping()
                    orders = await client.orders()
            assert orders == []
            assert serve.returncode is None
            with trio.fail_after(30):
                code = await serve.astop()
            assert code == 0, serve.log
            assert serve.log.count("SIGHUP ignored") == 1
            assert not serve.socket.exists()  # a clean stop removes the socket
        finally:
            serve.cleanup()


def test_ready_by_socket_survives_kill9_and_a_restart_on_the_same_state() -> None:
    with UltProcess.serve(notify=False) as svc:
        svc.start(timeout=60)
        assert svc.notify is None and svc.starts == 1
        assert svc.socket is not None
        with Client(svc.socket, timeout=10) as client:
            client.ping()
        svc.kill9()
        assert not svc.alive
        svc.start(timeout=60)  # over the stale socket the kill left behind
        assert svc.starts == 2 and svc.alive
        assert svc.journal.exists()
        assert svc.stop() == 0
        assert len(svc.log_events("stopped")) == 1  # the killed run never logged it
    assert not svc.home.exists()  # its own temp home is removed


def test_a_process_that_exits_before_ready_raises_with_its_log() -> None:
    with UltProcess.serve(args=["--no-such-option"]) as svc:
        with pytest.raises(RuntimeError, match="exited with 2") as failed:
            svc.start(timeout=60)
        assert "--no-such-option" in str(failed.value)


def test_a_simulator_is_ready_once_it_printed_its_port() -> None:
    args = ["sim", "alpaca", "--port", "0", "--key", "k", "--secret", "s"]
    with UltProcess(args, ports=True, name="sim") as sim:
        sim.start(timeout=60)
        assert sim.ports and sim.ports[0] > 0  # every address it printed, in order
        sim.signal(signal.SIGINT)
        assert sim.wait_exit(timeout=20) == 0


def test_run_ult_runs_one_command_to_completion() -> None:
    assert ult_command("health")[:3] == [sys.executable, "-m", "ult_actors.cli"]
    done = run_ult("--help")
    assert done.returncode == 0 and "serve" in done.stdout
