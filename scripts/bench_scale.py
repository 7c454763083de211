"""Scale: memory and start-to-ready time of a service with N broker connections.

Each size runs in its own process (``python scripts/bench_scale.py N``), so
one size's memory never counts against another. The child writes a config
with N paper connections (all defaults otherwise), builds the service, runs
it until every actor has started, then prints one JSON line: resident
memory, the time from ``build_service`` to ready, and its own start time so
the parent can report process start to ready as well.

Until the paper broker exists the child falls back to an in-memory fake
connector and says so (``"connector": "fake"``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio
from bench_common import child_env, python, read_line, rss_bytes, short_tempdir, stop_process

_HERE = Path(__file__).resolve()


def paper_available() -> bool:
    """Whether the embedded paper broker has been written yet."""
    return importlib.util.find_spec("ult_actors.brokers.paper") is not None


def _paper_config(n: int, state_dir: Path) -> Any:
    from ult_actors.config import load_config

    lines = [
        "[service]",
        'default_broker = "paper"',
        f'state_dir = "{state_dir}"',
        'log_level = "warning"',
        "",
        "[brokers.paper]",
        'kind = "paper"',
    ]
    for i in range(1, n):
        lines += ["", f"[brokers.paper{i}]", 'kind = "paper"']
    path = state_dir / "ult.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_config(path, env={})


def _fake_service(n: int, state_dir: Path) -> Any:
    from tests.actors.fakes import FakeConnector, FakeVenue
    from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
    from ult_actors.service import build_service

    names = ["paper"] + [f"paper{i}" for i in range(1, n)]
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(state_dir)),
        brokers=[BrokerEntry(name=x, kind="fake", enabled=True, settings=None) for x in names],
    )
    venues = {x: FakeVenue(x) for x in names}
    factories = {x: (lambda x=x: FakeConnector(x, venues[x])) for x in names}
    return build_service(cfg, env={}, connector_factories=factories)  # type: ignore[arg-type]


async def _run_child(n: int, state_dir: Path) -> dict[str, Any]:
    from ult_actors.logsetup import configure_logging
    from ult_actors.service import build_service

    configure_logging(json=True, level="warning")
    use_paper = paper_available()
    t0 = time.perf_counter()
    if use_paper:
        service = build_service(_paper_config(n, state_dir), env={})
    else:
        service = _fake_service(n, state_dir)
    built = time.perf_counter()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(300):
            await nursery.start(service.run)
        ready = time.perf_counter()
        up, total = service.brokers_up()
        result = {
            "brokers": n,
            "connector": "paper" if use_paper else "fake",
            "brokers_running": up,
            "brokers_configured": total,
            "build_s": round(built - t0, 4),
            "ready_s": round(ready - t0, 4),
            "rss_mb": round(rss_bytes() / 2**20, 1),
        }
        # Printed before shutting down, so the parent's clock stops at ready.
        print(json.dumps(result), flush=True)
        nursery.cancel_scope.cancel()
    return result


def child_main(argv: list[str]) -> int:
    """``bench_scale.py N``: build and start a service with N brokers, print a JSON line."""
    n = int(argv[0])
    with short_tempdir("bs-") as tmp:
        trio.run(_run_child, n, tmp)
    return 0


async def measure_one(n: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """Run one size in a fresh process; add process start to ready as the parent saw it."""
    t0 = time.perf_counter()
    proc = await trio.lowlevel.open_process(
        [python(), str(_HERE), str(n)],
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        with trio.fail_after(timeout_s):
            line = await read_line(proc.stdout)
        result: dict[str, Any] = json.loads(line)
        # The child prints once ready, so this is spawn -> ready (imports included).
        result["process_ready_s"] = round(time.perf_counter() - t0, 4)
        with trio.move_on_after(30):
            await proc.wait()  # let it shut down on its own
        return result
    finally:
        await stop_process(proc)


async def measure(sizes: list[int]) -> dict[str, Any]:
    """Every size, one process each."""
    return {"sizes": [await measure_one(n) for n in sizes]}


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
