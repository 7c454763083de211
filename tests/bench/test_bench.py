"""Smoke tests of ``python -m bench`` (``scripts/bench``): it runs, and its floor path measures. No timings asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio

from bench import floor as bench_floor
from bench.common import Budget, short_tempdir

ROOT = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, "-m", "bench"]


def test_help_describes_the_sections() -> None:
    out = subprocess.run(
        [*BENCH, "--help"],
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert "--quick" in out.stdout and "--json" in out.stdout
    for section in ("floor", "ult", "actors", "restart", "scale", "peer"):
        assert section in out.stdout


async def test_floor_clients_get_every_request_answered() -> None:
    with short_tempdir("tb-") as tmp:
        path = str(tmp / "floor.sock")
        async with trio.open_nursery() as nursery:
            with trio.fail_after(30):
                await nursery.start(bench_floor.serve, path)
                seq = await bench_floor.sequential(path, Budget(25, 10.0))
                pipe = await bench_floor.pipelined(path, Budget(300, 10.0), window=8)
            nursery.cancel_scope.cancel()
    assert seq["n"] == 25 and seq["p50_us"] > 0 and seq["p99_us"] >= seq["p50_us"]
    assert pipe["n"] == 300 and pipe["window"] == 8 and pipe["per_s"] > 0


def test_smoke_run_prints_one_json_document_with_every_section() -> None:
    out = subprocess.run(
        [*BENCH, "--smoke", "--json"],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )
    doc = json.loads(out.stdout)
    for section in ("meta", "floor", "ult", "restart", "scale", "peer", "ratios", "goals"):
        assert section in doc
    for section in ("floor", "ult", "actors", "restart", "scale", "peer"):
        # A section either ran or says plainly why it could not; it never crashes the run.
        assert doc[section]["status"] in ("ok", "unavailable"), doc[section]
    assert doc["floor"]["sequential"]["n"] > 0
    assert doc["floor"]["pipelined"]["n"] > 0
    assert [row["brokers"] for row in doc["scale"]["sizes"]] == [1, 10]
    assert all(row["brokers_running"] == row["brokers"] for row in doc["scale"]["sizes"])
    assert "goals" in out.stderr  # the human table goes to stderr next to the JSON


def test_report_of_a_partial_run_says_what_is_missing_instead_of_failing() -> None:
    from bench.report import goals, ratios, render_table

    doc = {
        "meta": {"quick": True},
        "floor": {"status": "ok", "sequential": {"n": 10, "p50_us": 50.0}},
        "ult": {"status": "unavailable", "reason": "not written yet: the IPC server"},
    }
    doc["ratios"] = ratios(doc)
    doc["goals"] = goals(doc)
    assert doc["ratios"]["sequential_p50"] is None
    assert all(goal["met"] is None for goal in doc["goals"])
    table = render_table(doc)
    assert "unavailable: not written yet: the IPC server" in table
    assert "(not run)" in table  # sections absent from the document


def test_goal_verdicts_follow_the_figures() -> None:
    from bench.report import goals, ratios

    doc = {
        "floor": {"sequential": {"p50_us": 100.0}, "pipelined": {"per_s": 10_000.0}},
        "ult": {"sequential": {"p50_us": 150.0}, "pipelined": {"1": {"per_s": 4_000.0}}},
        "scale": {"sizes": [{"brokers": 1000, "rss_mb": 150.0, "ready_s": 1.5}]},
    }
    doc["ratios"] = ratios(doc)
    met = {g["goal"]: g["met"] for g in goals(doc)}
    assert met["ult sequential p50 <= 2 x floor p50"] is True
    assert met["ult pipelined orders/s >= 0.5 x floor pipelined"] is False
    assert met["1,000 brokers RSS <= 200 MB"] is True
    assert met["1,000 brokers ready <= 1 s (build_service to ready)"] is False
