"""Smoke test of ``python -m bench.failover`` (``scripts/chaos --cluster``): a short failover run end
to end with real processes, a real PostgreSQL and the Alpaca simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_failover_run_loses_nothing_doubles_nothing_and_the_fenced_sends_nothing(
    postgres_url: str,
) -> None:
    # On the suite's PostgreSQL server: the run's own would cost a few seconds to initdb.
    # A 2 s lease (the bench's default): an active renews every quarter lease, and with
    # 1 s the run failed twice in two (no steady active within 30 s) on a machine loaded
    # to 15-20 on 2 cores, the suite on 3-4 workers among it.
    out = subprocess.run(
        [sys.executable, "-m", "bench.failover", "--orders", "30", "--lease-s", "2",
         "--database-url", postgres_url],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    outcome = json.loads(out.stdout)
    assert (outcome["lost"], outcome["duplicates"], outcome["fenced_sends"]) == (0, 0, 0)
    assert outcome["acked"] == 30
    assert outcome["fenced_probe"].startswith("refused")
    assert len(outcome["takeover_after_kill_s"]["each"]) == 2
