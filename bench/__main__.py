"""Benchmarks: ult against the floor, against alpaca-py, at scale and across restarts.

One run on one machine measures, side by side:

  floor    a bare trio Unix-socket server decoding the same order Struct and
           acking it: sequential round trips (p50/p99) and pipelined msgs/s
  ult      the real service (``ult serve``, paper broker at zero latency, risk
           on) through ``ult_actors.client.AsyncClient``: sequential
           submit->ack p50/p99/p99.9, pipelined orders/s from 1 and 4 clients
  actors   the actor path alone, in process (gateway -> router -> risk ->
           broker -> paper, nothing durable, no socket): what the actor
           runtime and core actors cost per order
  ratios   ult / floor, and the goals table: each goal of the hot-path
           issue with this run's figure and its verdict
  restart  broker actor crash -> running again (and -> next order answered);
           Alpaca simulator dropping its connections -> orders flowing again
  scale    RSS and start-to-ready with 1, 100 and 1,000 paper brokers
           configured, one process per size
  peer     p50 of an order sent to ``ult sim alpaca`` with alpaca-py directly,
           against the same order through ult to the same simulator
  nats     a remote client over NATS against the local socket, same service,
           same run: submit->ack p50/p99 and pipelined orders/s (``bench.nats_path``)
  http     the REST brokers' HTTP engine: httpx, httpcore's pool and the
           httptools client ult uses, one order at a time to ``ult sim alpaca``, alone
           and through the Alpaca connector, taking turns (``bench.http_engine``)

Every loop is bounded in count and in time; all traffic stays on Unix
sockets and 127.0.0.1. A section that cannot run (a missing piece or
package) says why in its ``status`` and the run goes on.

  scripts/bench              full run (a few minutes), table on stdout
                             (first sets up .venv with the bench extra, as
                             scripts/test and scripts/serve set up theirs,
                             then runs ``python -m bench`` from the repository root)
  scripts/bench --quick      under a minute
  scripts/bench --json       one JSON document on stdout (the table goes to stderr)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from bench.common import ROOT, Unavailable
from bench.goals import goals
from bench.plan import Plan, plan_for
from bench.report import ratios, render_table
from ult_actors.compiled import compiled_modules, describe

SECTIONS = ("floor", "ult", "actors", "restart", "scale", "peer", "http", "nats")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Sections: " + ", ".join(SECTIONS),
    )
    p.add_argument("--quick", action="store_true", help="short run (under a minute)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    # For the test suite: run every code path once with tiny budgets.
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="run the ult section's service under py-spy; collapsed stacks go to DIR",
    )
    p.add_argument(
        "--only",
        metavar="SECTIONS",
        help="comma-separated sections to run (default: all)",
    )
    return p


#: The interpreter ``scripts/install-systemd`` builds the unit's virtualenv on, and
#: ``scripts/bench`` its own when it is there.
DEPLOYED_PYTHON = Path("/usr/bin/python3")


def deployed_prefix(python: Path = DEPLOYED_PYTHON) -> str | None:
    """The prefix of the interpreter the service is deployed on, or None where it is absent
    (or does not answer): a run on another measures another interpreter's speed."""
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print(sys.base_prefix)"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _meta(quick: bool) -> dict[str, Any]:
    import msgspec

    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "quick": quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
        "python": platform.python_version(),
        # Which build: a distribution's (/usr: PGO, LTO) or a pyenv/source one runs the
        # service's Python at different speeds (docs/performance.md, "the interpreter").
        "python_prefix": sys.base_prefix,
        "deployed_python_prefix": deployed_prefix(),
        "trio": trio.__version__,
        "msgspec": msgspec.__version__,
        # The service runs from this tree: its hot path compiled (mypyc) or pure Python.
        "build": describe(),
        "compiled_modules": compiled_modules(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


async def _section(
    name: str, run: Callable[[], Awaitable[dict[str, Any]]], log: Callable[[str], None]
) -> dict[str, Any]:
    log(f"bench: {name} ...")
    t0 = time.perf_counter()
    try:
        result = await run()
    except Unavailable as exc:
        result = {"status": "unavailable", "reason": str(exc)}
    except Exception as exc:  # a broken section must not hide the others' figures
        result = {
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
        }
    else:
        result.setdefault("status", "ok")
    result["seconds"] = round(time.perf_counter() - t0, 2)
    log(f"bench: {name} {result['status']} in {result['seconds']} s")
    return result


async def _run(
    plan: Plan, sections: list[str], log: Callable[[str], None], profile: Path | None
) -> dict[str, Any]:
    from bench import actors as bench_actors
    from bench import floor as bench_floor
    from bench import http_engine as bench_http
    from bench import peer as bench_peer
    from bench import restart as bench_restart
    from bench import scale as bench_scale
    from bench import ult as bench_ult

    async def floor() -> dict[str, Any]:
        return await bench_floor.measure(plan.floor_sequential, plan.floor_pipelined)

    async def ult() -> dict[str, Any]:
        missing = bench_ult.missing()
        if missing:
            raise Unavailable(missing)
        return await bench_ult.measure(plan, profile)

    async def actors() -> dict[str, Any]:
        return await bench_actors.measure(
            plan.actors_sequential, plan.actors_pipelined, window=plan.window
        )

    async def restart() -> dict[str, Any]:
        out: dict[str, Any] = {
            "crash": await bench_restart.measure_crash(plan.restart_samples, plan.restart_seconds)
        }
        missing = bench_peer.missing()
        if missing:
            out["drop"] = {"status": "unavailable", "reason": missing}
        else:
            out["drop"] = await bench_peer.measure_drop(plan)
        return out

    async def scale() -> dict[str, Any]:
        return await bench_scale.measure(
            list(plan.scale_sizes), restart=plan.scale_restart, idle_s=plan.scale_idle_s
        )

    async def peer() -> dict[str, Any]:
        missing = bench_peer.missing()
        if missing:
            raise Unavailable(missing)
        return await bench_peer.measure(plan)

    async def http() -> dict[str, Any]:
        return await bench_http.measure(plan.http, plan.http_rounds)

    async def nats() -> dict[str, Any]:
        from bench import nats_path

        return await nats_path.measure(plan)

    runners = {
        "floor": floor,
        "ult": ult,
        "actors": actors,
        "restart": restart,
        "scale": scale,
        "peer": peer,
        "http": http,
        "nats": nats,
    }
    results: dict[str, Any] = {}
    for name in sections:
        results[name] = await _section(name, runners[name], log)
    return results


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    sections = list(SECTIONS)
    if args.only:
        sections = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in sections if s not in SECTIONS]
        if unknown:
            print(f"scripts/bench: unknown section(s) {', '.join(unknown)}", file=sys.stderr)
            return 2

    from ult_actors.logsetup import configure_logging

    # The bench's in-process services would otherwise log every injected crash.
    configure_logging(json=True, level="error")
    plan = plan_for(quick=args.quick, smoke=args.smoke)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    doc: dict[str, Any] = {"meta": _meta(args.quick)}
    if args.smoke:
        doc["meta"]["smoke"] = True
    t0 = time.perf_counter()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    doc.update(trio.run(_run, plan, sections, log, args.profile))
    doc["ratios"] = ratios(doc)
    doc["goals"] = goals(doc)
    doc["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
        print(render_table(doc), file=sys.stderr)
    else:
        print(render_table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
