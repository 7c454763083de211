"""The acceptance path by hand, as a user would: ``ult sim ib``, ``ult serve``, ``ult submit``.

Also shows the simulator's fault switches driven from another process
(``ult sim ib ctl``), the way a chaos script would use them.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.ipc.service_process import ULT, ServiceProcess, run_ult

START_S = 15.0


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    if not readable:
        raise AssertionError(f"no output from {proc.args} within {timeout}s")
    return proc.stdout.readline()


@pytest.fixture
def tws_sim() -> Iterator[tuple[int, int]]:
    """``ult sim ib`` on free ports; yields (api port, admin port)."""
    proc = subprocess.Popen(
        [ULT, "sim", "ib", "--port", "0", "--admin-port", "0", "--tick", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
    )  # fmt: skip
    try:
        line = _first_line(proc, START_S)
        ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", line)]
        assert len(ports) == 2, line
        yield ports[0], ports[1]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_ult_submit_fills_against_the_tws_simulator_and_faults_come_from_outside(
    tws_sim: tuple[int, int],
) -> None:
    port, admin = tws_sim
    svc = ServiceProcess(env={"IB_PORT": str(port), "ORDER_MAX_RETRIES": "0"}).start()
    try:
        sock = str(svc.socket)
        done = run_ult("submit", "AAPL", "buy", "10", "--broker", "ib", "--wait", "--socket", sock)
        assert done.returncode == 0, done.stderr
        assert re.search(r"status\s+filled", done.stdout) and re.search(r"filled\s+10", done.stdout)

        lost = run_ult("sim", "ib", "ctl", "--admin-port", str(admin), "lost")
        assert lost.returncode == 0 and lost.stdout.strip() == "ok sent 1100"
        refused = run_ult("submit", "AAPL", "buy", "1", "--broker", "ib", "--socket", sock)
        assert refused.returncode == 1
        assert "broker_unavailable" in refused.stderr + refused.stdout

        restored = run_ult("sim", "ib", "ctl", "--admin-port", str(admin), "restored")
        assert restored.stdout.strip() == "ok sent 1102"
        again = run_ult("submit", "AAPL", "buy", "1", "--broker", "ib", "--wait", "--socket", sock)
        assert again.returncode == 0, again.stderr
        positions = run_ult("positions", "--broker", "ib", "--socket", sock)
        assert re.search(r"ib\s+AAPL\s+11\b", positions.stdout), positions.stdout
    finally:
        code = svc.stop()
        svc.cleanup()
    assert code == 0


def test_ctl_answers_status_and_names_unknown_commands(tws_sim: tuple[int, int]) -> None:
    _, admin = tws_sim
    unknown = run_ult("sim", "ib", "ctl", "--admin-port", str(admin), "explode")
    assert unknown.returncode == 1 and unknown.stdout.startswith("error unknown command")
    status = run_ult("sim", "ib", "ctl", "--admin-port", str(admin), "status")
    assert status.returncode == 0 and "sessions=[]" in status.stdout
