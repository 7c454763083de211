"""Smoke test of ``python -m bench.outage`` (``scripts/outage``): it runs one short outage end to end with real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = [sys.executable, "-m", "bench.outage"]  # run from ROOT


def test_help_names_the_outages_and_the_cap() -> None:
    out = subprocess.run(
        [*SCRIPT, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    assert "--outages" in out.stdout and "--cap" in out.stdout


def test_a_short_outage_heals_with_no_command() -> None:
    out = subprocess.run(
        [*SCRIPT, "--outages", "1", "--cap", "1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (line,) = out.stdout.splitlines()
    outcome = json.loads(line)
    assert outcome["healed_by_itself"] is True
    assert outcome["first_order_s"] < 1 + 10
