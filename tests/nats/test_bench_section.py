"""``scripts/bench --only nats``: the remote client and the local socket, same service, same run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_nats_section_measures_both_paths_in_one_run() -> None:
    from bench.nats_path import missing

    if missing():
        pytest.skip(f"the nats section cannot run here: {missing()}")
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", "nats", "--json"],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )  # fmt: skip
    doc = json.loads(out.stdout)["nats"]
    assert doc["status"] == "ok", doc
    for path in ("socket", "nats"):
        assert doc[path]["sequential"]["n"] > 0 and doc[path]["sequential"]["p50_us"] > 0
        assert doc[path]["pipelined"]["per_s"] > 0
    assert doc["ratios"]["sequential_p50"] > 0
    assert "over the NATS" in out.stderr  # its row in the table
