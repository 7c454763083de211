"""Smoke test of ``python -m bench.soak`` (``scripts/soak``): a few seconds of it run and print samples and a verdict."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOAK = [sys.executable, "-m", "bench.soak"]  # run from ROOT


def test_help_names_the_knobs() -> None:
    out = subprocess.run(
        [*SOAK, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    for option in ("--minutes", "--seconds", "--rate", "--interval", "--warmup"):
        assert option in out.stdout


def test_a_short_run_samples_rss_and_files_and_gives_a_verdict() -> None:
    # Far too short to judge growth (hence the huge tolerance): this checks the
    # machinery — service up, load flowing, bad clients connected, samples taken.
    out = subprocess.run(
        [*SOAK, "--seconds", "3", "--interval", "0.5", "--warmup", "1",
         "--rate", "50", "--tolerance", "1000"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    samples = re.findall(r"rss=\s*([\d.]+) MiB open_files=\s*(\d+) orders_answered=(\d+)", out.stdout)
    assert len(samples) >= 3
    assert int(samples[-1][2]) > int(samples[0][2]) > 0  # orders kept flowing
    assert "verdict: FLAT" in out.stdout and "0 refused" in out.stdout
