"""One service per socket: a live one refuses a second, a dead one's socket is taken over."""

from __future__ import annotations

import re

from tests.ipc.service_process import ServiceProcess
from ult_actors.client import Client


def test_a_second_service_refuses_to_start_and_a_killed_ones_socket_is_reused() -> None:
    first = ServiceProcess(env={"PAPER_STARTING_CASH": "1000000"}).start()
    second = ServiceProcess(first.base, state_dir=first.base / "state2", name="second")
    third = ServiceProcess(first.base, state_dir=first.base / "state3", name="third")
    try:
        assert first.proc is not None
        second.spawn()
        assert second.wait_exit(timeout=30) == 1
        assert re.search(rf"already running, pid {first.proc.pid}\b", second.log()), second.log()
        with Client(first.socket, timeout=10) as c:
            c.ping()  # the first one was not disturbed

        first.kill()  # no clean-up: the socket file stays behind
        assert first.socket.exists()
        third.start()
        with Client(third.socket, timeout=10) as c:
            assert c.health().pid == third.proc.pid  # type: ignore[union-attr]
        assert "replaced a stale socket" in third.log()
    finally:
        second.stop()
        third.stop()
        first.cleanup()
