"""Smoke tests of ``python -m bench`` (``scripts/bench``): it runs, and its floor path measures. No timings asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    for section in ("floor", "ult", "actors", "restart", "scale", "peer", "http"):
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
    for section in ("meta", "floor", "ult", "restart", "scale", "peer", "http", "ratios", "goals"):
        assert section in doc
    assert doc["ult"]["bare_commit"]["n"] > 0
    for engine in ("httpx", "httpcore", "httptools"):
        assert doc["http"][engine]["connector"]["n"] > 0, engine
    assert [g["goal"] for g in doc["goals"]] == [
        "sequential_p50", "pipelined_per_s", "full_sync_overhead",
        "peer_p50", "paper_1000", "server_cpu_pipelined",
    ]  # fmt: skip
    for section in ("floor", "ult", "actors", "restart", "scale", "peer", "http"):
        # A section either ran or says plainly why it could not; it never crashes the run.
        assert doc[section]["status"] in ("ok", "unavailable"), doc[section]
    assert doc["floor"]["sequential"]["n"] > 0
    assert doc["floor"]["pipelined"]["n"] > 0
    assert [row["brokers"] for row in doc["scale"]["sizes"]] == [1, 10]
    assert all(row["brokers_running"] == row["brokers"] for row in doc["scale"]["sizes"])
    assert "goals" in out.stderr  # the human table goes to stderr next to the JSON


def test_report_of_a_partial_run_says_what_is_missing_instead_of_failing() -> None:
    from bench.goals import goals
    from bench.report import ratios, render_table

    doc = {
        "meta": {"quick": True},
        "floor": {"status": "ok", "sequential": {"n": 10, "p50_us": 50.0}},
        "ult": {"status": "unavailable", "reason": "not written yet: the IPC server"},
    }
    doc["ratios"] = ratios(doc)
    doc["goals"] = goals(doc)
    assert doc["ratios"]["sequential_p50"] is None
    assert {goal["verdict"] for goal in doc["goals"]} == {"not measured"}
    table = render_table(doc)
    assert "unavailable: not written yet: the IPC server" in table
    assert "(not run)" in table  # sections absent from the document


def _measured(**changes: Any) -> dict[str, Any]:
    """A benchmark document with every figure the goals read, as a run would leave it."""
    from bench.ult import FULL_SYNC

    doc: dict[str, Any] = {
        "floor": {
            "sequential": {"p50_us": 100.0},
            "pipelined": {"per_s": 10_000.0, "server_cpu_us": 40.0},
        },
        "ult": {
            "sequential": {"p50_us": 250.0},
            "pipelined": {"1": {"per_s": 4_000.0, "window": 128, "server_cpu_us": 100.0}},
            "bare_commit": {"p50_us": 400.0, "p99_us": 900.0},
            "variants": {FULL_SYNC: {"sequential": {"p50_us": 650.0}}},
        },
        "peer": {"direct": {"p50_us": 1_000.0}, "via_ult": {"p50_us": 900.0}},
        "scale": {"sizes": [{"brokers": 1000, "rss_mb": 110.0, "process_ready_s": 0.9}]},
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = doc
        for key in parents:
            node = node[key]
        node[leaf] = value
    return doc


def _verdicts(doc: dict[str, Any]) -> dict[str, str]:
    from bench.goals import goals

    return {g["goal"]: g["verdict"] for g in goals(doc)}


def test_each_goal_is_judged_against_its_must_and_its_aim() -> None:
    assert _verdicts(_measured()) == {
        "sequential_p50": "must met",  # 2.5x: <= 3x, not <= 2x
        "pipelined_per_s": "must met",  # 0.4x of the floor: >= 0.25x, not >= 0.5x
        "full_sync_overhead": "must met",  # 650 - 100 - 400 = 150 us: <= 200, not <= 100
        "peer_p50": "aim met",  # 0.9x
        "paper_1000": "must met",  # 110 MB misses the aim though 0.9 s meets it
        "server_cpu_pipelined": "must met",  # 100 us
    }
    assert _verdicts(_measured(ult__sequential={"p50_us": 301.0}))["sequential_p50"] == "NOT met"
    assert _verdicts(_measured(ult__sequential={"p50_us": 200.0}))["sequential_p50"] == "aim met"
    # The full row takes the bare commit measured in the same run off the latency.
    assert _verdicts(_measured(ult__bare_commit={"p50_us": 300.0}))[
        "full_sync_overhead"
    ] == "NOT met"  # 250 us
    assert _verdicts(_measured(ult__bare_commit={"p50_us": 500.0}))[
        "full_sync_overhead"
    ] == "aim met"  # 50 us
    # A bare commit slower than the whole full path above the floor: the disk changed
    # pace between the two, so the row cannot be read (it would claim the aim).
    assert _verdicts(_measured(ult__bare_commit={"p50_us": 600.0}))[
        "full_sync_overhead"
    ] == "not measured"  # -50 us
    assert _verdicts(_measured(ult__pipelined={"1": {"per_s": 6_000.0, "window": 128}}))[
        "pipelined_per_s"
    ] == "aim met"


def test_the_full_row_takes_off_the_quicker_round_trip() -> None:
    """Where the service's default sequential order is quicker than the floor's echo (its
    loop polls, the floor's server sleeps), the row takes the service's own off: the
    floor's would credit it with the floor's wake-up."""
    from bench.goals import goals
    from bench.ult import FULL_SYNC

    # Floor 184 us, the service's own 92.8 us: 316 - 92.8 - 140 = 83.2 us (the floor's
    # would read 316 - 184 - 140 < 0, "not measured").
    doc = _measured(
        floor__sequential={"p50_us": 184.0},
        ult__sequential={"p50_us": 92.8},
        ult__bare_commit={"p50_us": 140.0, "p99_us": 278.0},
        ult__variants={FULL_SYNC: {"sequential": {"p50_us": 316.0}}},
    )
    (row,) = [g for g in goals(doc) if g["goal"] == "full_sync_overhead"]
    assert row["now"] == {"overhead": 83.2}
    assert row["verdict"] == "aim met"
    assert row["note"] == (
        'synchronous="full": seq p50 316 us - ult\'s default seq p50 92.8 us (quicker than'
        " the floor's 184 us) - bare WAL commit p50 140 us (p99 278 us)"
    )
    # A slower service: the floor's round trip is the quicker, and is taken off.
    (row,) = [g for g in goals(_measured()) if g["goal"] == "full_sync_overhead"]
    assert row["now"] == {"overhead": 150.0}  # 650 - 100 - 400
    assert row["note"].startswith('synchronous="full": seq p50 650 us - floor p50 100 us -')
    assert _verdicts(_measured(peer__via_ult={"p50_us": 1_600.0}))["peer_p50"] == "NOT met"


def test_the_pipelined_goal_counts_only_a_window_of_128() -> None:
    doc = _measured()
    doc["ult"]["pipelined"]["1"]["window"] = 16
    assert _verdicts(doc)["pipelined_per_s"] == "not measured"


def test_a_row_of_two_figures_needs_both_within_the_bound() -> None:
    slow_start = [{"brokers": 1000, "rss_mb": 90.0, "process_ready_s": 1.6}]
    assert _verdicts(_measured(scale__sizes=slow_start))["paper_1000"] == "NOT met"
    small_fast = [{"brokers": 1000, "rss_mb": 90.0, "process_ready_s": 0.5}]
    assert _verdicts(_measured(scale__sizes=small_fast))["paper_1000"] == "aim met"


def test_the_table_shows_now_must_aim_and_verdict_per_goal() -> None:
    from bench.goals import goals
    from bench.report import render_table

    doc = _measured()
    doc["goals"] = goals(doc)
    table = render_table(doc).splitlines()
    header = next(line for line in table if "verdict" in line)
    assert header.split() == ["figure", "now", "must", "aim", "verdict"]
    row = next(line for line in table if line.strip().startswith("1,000 paper connections"))
    assert "110 MB / 0.9 s" in row and "<= 120 MB / <= 1.5 s" in row
    assert "<= 100 MB / <= 1 s" in row and row.rstrip().endswith("must met")
    row = next(line for line in table if line.strip().startswith("sequential submit->ack"))
    assert "2.5x" in row and "<= 3x" in row and "<= 2x" in row
    # The full row's figure is shown with what it was computed from.
    assert any("650 us - floor p50 100 us - bare WAL commit p50 400 us" in line for line in table)
    # The CPU row beside the floor's CPU of this run and of the goals' day: a host half as
    # fast as that day's reads 100 us where that day's would have read ~58.
    assert (
        "  server CPU per pipelined order 100 us = 2.50x the floor's 40 us in this run;"
        " the floor's was 23.2 us when the goals were set (120 us was 5.2x it, 60 us 2.6x)"
    ) in table


def test_the_cpu_note_needs_the_floors_cpu() -> None:
    from bench.goals import goals

    doc = _measured()
    del doc["floor"]["pipelined"]["server_cpu_us"]
    cpu = next(g for g in goals(doc) if g["goal"] == "server_cpu_pipelined")
    assert cpu["note"] is None and cpu["verdict"] == "must met"


def test_a_bare_commit_is_one_durable_row_per_sample(tmp_path: Path) -> None:
    import sqlite3

    from bench.commit import WARM_UP, commit_samples

    samples = commit_samples(tmp_path / "c.db", Budget(7, 30.0))
    assert len(samples) == 7 and all(ns > 0 for ns in samples)
    conn = sqlite3.connect(tmp_path / "c.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (7 + WARM_UP,)
    finally:
        conn.close()


def test_the_peer_services_alpaca_budget_never_holds_an_order_of_a_full_run(tmp_path: Path) -> None:
    # The peer figure is one order's latency: a budget that paces the run (Alpaca's
    # default bucket of 20) would time the token waits instead of the path.
    from bench.peer import write_ult_config
    from bench.plan import plan_for
    from ult_actors.brokers.budget import budget_for
    from ult_actors.config import load_config

    config = load_config(write_ult_config(tmp_path, "http://127.0.0.1:9"), env={})
    (alpaca,) = [b for b in config.enabled_brokers if b.kind == "alpaca"]
    budget = budget_for(alpaca.name, alpaca.kind, alpaca.requests_per_s, alpaca.request_burst)
    full = plan_for(quick=False)
    orders = 2 * full.peer.count + 100  # journal on and off, warm-ups, the connect's requests
    assert budget is None or budget.burst - budget.query_reserve >= orders


def test_a_run_off_the_deployed_interpreter_says_so() -> None:
    from bench.report import render_table

    doc = _measured()
    doc["meta"] = {"python_prefix": "/root/.pyenv/versions/3.11.7", "deployed_python_prefix": "/usr"}
    table = render_table(doc).splitlines()
    assert (
        "note: run on the Python in /root/.pyenv/versions/3.11.7, not the deployed one in /usr"
        " (scripts/install-systemd, scripts/bench): its times and CPU are not comparable"
        " with a run on that one"
    ) in table
    # On the deployed interpreter, or where there is none to compare with: no note.
    for deployed in ("/root/.pyenv/versions/3.11.7", None):
        doc["meta"]["deployed_python_prefix"] = deployed
        assert not any(line.startswith("note: run on") for line in render_table(doc).splitlines())


def test_the_deployed_interpreter_is_asked_for_its_prefix(tmp_path: Path) -> None:
    from bench.__main__ import deployed_prefix

    assert deployed_prefix(Path(sys.executable)) == sys.base_prefix
    assert deployed_prefix(tmp_path / "no-python") is None
