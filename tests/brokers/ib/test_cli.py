"""The acceptance path by hand, as a user would: ``ult sim ib``, ``ult serve``, ``ult submit``.

Also shows the simulator's fault switches driven from another process
(``ult sim ib ctl``), the way a chaos script would use them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from ult_actors.testing.process import UltProcess, run_ult

START_S = 15.0


@pytest.fixture
def tws_sim() -> Iterator[tuple[int, int]]:
    """``ult sim ib`` on free ports; yields (api port, admin port)."""
    args = ["sim", "ib", "--port", "0", "--admin-port", "0", "--tick", "0"]
    with UltProcess(args, ports=True, name="sim") as sim:
        sim.start(timeout=START_S)
        assert len(sim.ports) == 2, sim.log
        yield sim.ports[0], sim.ports[1]


def test_ult_submit_fills_against_the_tws_simulator_and_faults_come_from_outside(
    tws_sim: tuple[int, int],
) -> None:
    port, admin = tws_sim
    svc = UltProcess.serve(env={"IB_PORT": str(port), "ORDER_MAX_RETRIES": "0"}).start()
    try:
        sock = str(svc.socket)
        done = run_ult("submit", "AAPL", "buy", "10", "--broker", "ib", "--wait", "--socket", sock)
        assert done.returncode == 0, done.stderr
        assert re.search(r"status\s+filled", done.stdout) and re.search(r"filled\s+10", done.stdout)

        lost = run_ult("sim", "ib", "ctl", "--admin-port", str(admin), "lost")
        assert lost.returncode == 0 and lost.stdout.strip() == "ok sent 1100"
        # Held at the gate while IB is lost (on_unavailable = "hold"), never sent past its
        # deadline: the client hears a timeout, and the order never reaches TWS.
        held = run_ult(
            "submit", "AAPL", "buy", "1", "--broker", "ib", "--timeout", "2", "--socket", sock
        )
        assert held.returncode == 1
        assert "timeout" in held.stderr + held.stdout, held.stderr + held.stdout

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
