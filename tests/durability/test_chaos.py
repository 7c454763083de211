"""The chaos script, short: broker faults, actor crashes and kill -9, yet nothing lost or doubled,
replace links kept and no exit left working after its peer filled: lists and replaces at every
broker, partial fills among them.

300 orders, each client keeping to one broker (a venue down under its faults holds up only
its own clients); the full-size runs (``scripts/chaos --orders 10000``) mix every broker in
every client.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAOS = [sys.executable, "-m", "bench.chaos"]  # run from ROOT


def test_short_chaos_run_loses_and_doubles_nothing() -> None:
    run = subprocess.run(
        [*CHAOS, "--orders", "300", "--kills", "2", "--seed", "11",
         "--fault-rate", "0.1", "--stream-drop-every", "2", "--sim-faults-per-s", "10",
         "--settle-timeout", "90", "--clients-by-broker",
         # Lists and replaces weigh more than by default, so that each case the checks
         # below need (a filled exit pair, a replace after a partial fill, an OTO) comes
         # up several times in 300 orders, never by luck only once.
         "--mix", "order=0.35,replace=0.25,oco=0.16,bracket=0.1,oto=0.14"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    report = run.stdout
    assert run.returncode == 0, f"{report}\n{run.stderr[-3000:]}"
    lines = {line[:38].strip(): line[38:].strip() for line in report.splitlines() if len(line) > 38}
    assert lines["submitted"] == "300"
    assert lines["duplicates"] == "0"
    # Counted from each broker's own side, every broker the run used.
    assert {b: lines.get(f"at {b}") for b in ("paper", "alpaca", "oanda", "ib")} == {
        "paper": "0", "alpaca": "0", "oanda": "0", "ib": "0",
    }  # fmt: skip
    assert lines["lost"] == "0"
    assert lines["mismatched journal/broker"] == "0"
    assert lines["unsettled"] == "0"
    assert lines["positions agree (broker = journal)"] == "yes"
    # The service's own book too: every fill applied once, across kills and stream cuts.
    assert lines["service book = broker"] == "yes"
    assert lines["kill9"] == "2"
    # Replaces and order lists were in the mix, and held: links kept, no exit left working.
    assert int(lines["replaces applied"]) > 0
    assert lines["replace links broken"] == "0"
    assert {kind: int(lines[kind]) > 0 for kind in ("bracket", "oco", "oto")} == {
        "bracket": True, "oco": True, "oto": True,
    }  # fmt: skip
    assert int(lines["exit pairs one leg of which filled"]) > 0
    # Partial fills were in the mix too: a replace landed after one (the fill kept, as
    # the position checks above hold), and emulated children went out in pieces.
    assert int(lines["replaced after a partial fill"]) > 0
    assert int(lines["emulated pieces and reduced peers"]) > 0
    assert lines["leg working after its peer filled"] == "0"
    # The faults really happened, at the paper broker and at every simulator.
    fault_rows = re.findall(r"^  (\w+):\w+ +(\d+)$", report, flags=re.MULTILINE)
    faulted = {broker for broker, count in fault_rows if int(count) > 0}
    assert faulted >= {"paper", "alpaca", "oanda", "ib"}
    assert int(lines["faults injected"]) > 20
