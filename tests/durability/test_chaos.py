"""The chaos script, short: faults, actor crashes and a kill -9, then no order lost or doubled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHAOS = Path(__file__).resolve().parents[2] / "scripts" / "chaos.py"


def test_short_chaos_run_loses_and_doubles_nothing() -> None:
    run = subprocess.run(
        [sys.executable, str(CHAOS), "--orders", "300", "--kills", "2", "--seed", "11",
         "--fault-rate", "0.1", "--stream-drop-every", "2", "--settle-timeout", "60"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    report = run.stdout
    assert run.returncode == 0, f"{report}\n{run.stderr[-3000:]}"
    lines = dict(
        (line[:38].strip(), line[38:].strip()) for line in report.splitlines() if len(line) > 38
    )
    assert lines["submitted"] == "300"
    assert lines["duplicates"] == "0"
    assert lines["lost"] == "0"
    assert lines["mismatched journal/broker"] == "0"
    assert lines["positions agree (broker = journal)"] == "yes"
    assert lines["kill9"] == "2"
    # The faults really happened: several kinds, and the actor was restarted by them.
    assert int(lines["faults injected"]) > 20
    assert int(lines.get("stream_drop", "0")) + int(lines.get("actor_crash", "0")) > 0
