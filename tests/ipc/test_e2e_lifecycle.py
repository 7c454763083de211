"""One service per socket: a live one refuses a second, a dead one's socket is taken over."""

from __future__ import annotations

import re

from ult_actors.client import Client
from ult_actors.testing.process import UltProcess


def test_a_second_service_refuses_to_start_and_a_killed_ones_socket_is_reused() -> None:
    first = UltProcess.serve(env={"PAPER_STARTING_CASH": "1000000"}).start()
    second = UltProcess.serve(first.home, state_dir=first.home / "state2", name="second")
    third = UltProcess.serve(first.home, state_dir=first.home / "state3", name="third")
    try:
        assert first.proc is not None
        second.spawn()
        assert second.wait_exit(timeout=30) == 1
        assert re.search(rf"already running, pid {first.proc.pid}\b", second.log), second.log
        with Client(first.socket, timeout=10) as c:
            c.ping()  # the first one was not disturbed

        first.kill9()  # no clean-up: the socket file stays behind
        assert first.socket.exists()
        third.start()
        with Client(third.socket, timeout=10) as c:
            assert c.health().pid == third.proc.pid  # type: ignore[union-attr]
        third.wait_log("replaced a stale socket")
    finally:
        second.stop()
        third.stop()
        first.cleanup()
