"""Smoke test of ``python -m bench.journal_memory``: it runs and reports each figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = [sys.executable, "-m", "bench.journal_memory"]  # run from ROOT


def test_the_journal_memory_benchmark_reports_growth_and_lookup_costs() -> None:
    out = subprocess.run(
        [*SCRIPT, "--orders", "400", "--window", "100", "--lookups", "50",
         "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    result = json.loads(out.stdout)
    assert result["orders"] == 400 and result["window"] == 100
    assert "bytes_per_order_beyond_window" in result
    for kind in ("get_old_order_from_file", "get_unknown_id"):
        assert result[kind]["p99_us"] >= result[kind]["p50_us"] > 0
