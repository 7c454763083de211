"""Scale: memory and start-to-ready time of a service with N broker connections.

Each size runs in its own process (``python -m bench.scale N``), so
one size's memory never counts against another. The child writes a config
with N paper connections (all defaults otherwise), builds the service, runs
it until every actor has started, then prints one JSON line: resident
memory and the time from ``build_service`` to ready (the parent adds process
start to ready); then a second line with the CPU the idle service uses. The
largest size is also run with an instant broker that stores nothing, to
tell the actors' own cost from the paper connector's.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import LineReader, child_env, python, rss_bytes, short_tempdir, stop_process

#: How long the idle CPU of a started service is watched (by default).
IDLE_S = 1.0


def paper_available() -> bool:
    """Whether the embedded paper broker has been written yet."""
    return importlib.util.find_spec("ult_actors.brokers.paper.connector") is not None


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


async def _trade_once_each(service: Any, n: int) -> None:
    """One market order through every connection: each paper account then exists."""
    from decimal import Decimal

    from ult_actors.messages import OrderRequest, Submit

    names = ["paper", *(f"paper{i}" for i in range(1, n))]

    async def one(i: int, name: str) -> None:
        order = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), broker=name)
        await service.gateway.handle(Submit(id=i, order=order))

    async with trio.open_nursery() as nursery:
        for i, name in enumerate(names):
            nursery.start_soon(one, i, name)


async def _run_child(
    n: int, state_dir: Path, connector: str, *, trade: bool = False, idle_s: float = IDLE_S
) -> dict[str, Any]:
    from ult_actors.logsetup import configure_logging
    from ult_actors.service import build_service

    configure_logging(json=True, level="warning")
    if not paper_available():
        raise SystemExit("the paper broker is not available")
    t0 = time.perf_counter()
    config = _paper_config(n, state_dir)
    if connector == "instant":
        # The same tree with a broker that stores nothing: what the actors themselves cost.
        from bench.actors import InstantConnector

        factories: Any = {
            b.name: (lambda name=b.name: InstantConnector(name)) for b in config.brokers
        }
        service = build_service(config, env={}, connector_factories=factories)
    else:
        service = build_service(config, env={})
    built = time.perf_counter()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(300):
            await nursery.start(service.run)
        ready = time.perf_counter()
        up, total = service.brokers_up()
        result = {
            "brokers": n,
            "connector": connector,
            "brokers_running": up,
            "brokers_configured": total,
            "build_s": round(built - t0, 4),
            "ready_s": round(ready - t0, 4),
            "rss_mb": round(rss_bytes() / 2**20, 1),
        }
        # Printed before anything else, so the parent's clock stops at ready.
        print(json.dumps(result), flush=True)
        # Then what the idle service costs: the paper clock keeps running.
        cpu0 = time.process_time()
        t1 = time.perf_counter()
        await trio.sleep(idle_s)
        idle = (time.process_time() - cpu0) / (time.perf_counter() - t1)
        print(json.dumps({"idle_cpu_percent": round(100 * idle, 1)}), flush=True)
        if trade:
            await _trade_once_each(service, n)
        nursery.cancel_scope.cancel()
    return result


def child_main(argv: list[str]) -> int:
    """``python -m bench.scale N STATE_DIR [paper|instant] [trade|-] [IDLE_S]``: start a service,
    print JSON lines (with ``trade``, then send one order through each connection before
    stopping; ``IDLE_S``: seconds the idle CPU is watched, default ``IDLE_S``).

    ``python -m bench.scale N`` alone measures size N from the outside, as the
    bench does: a fresh start, a restart on the state it left, a restart once
    every account has traded, and the instant broker; one JSON line each.
    """
    if len(argv) == 1:
        trio.run(_print_one_size, int(argv[0]))
        return 0
    connector = argv[2] if len(argv) > 2 else "paper"
    trade = len(argv) > 3 and argv[3] == "trade"
    idle_s = float(argv[4]) if len(argv) > 4 else IDLE_S
    trio.run(
        functools.partial(_run_child, trade=trade, idle_s=idle_s),
        int(argv[0]), Path(argv[1]), connector,
    )  # fmt: skip
    return 0


async def _print_one_size(n: int) -> None:
    with short_tempdir("bs-") as tmp:
        print(json.dumps({"run": "fresh", **await measure_one(n, tmp)}), flush=True)
        print(json.dumps({"run": "restart", **await measure_one(n, tmp, trade=True)}), flush=True)
        traded = await measure_one(n, tmp)
        print(json.dumps({"run": "restart, every account traded", **traded}), flush=True)
    with short_tempdir("bs-") as tmp:
        instant = await measure_one(n, tmp, connector="instant")
        print(json.dumps({"run": "instant", **instant}), flush=True)


async def measure_one(
    n: int,
    state_dir: Path,
    timeout_s: float = 120.0,
    connector: str = "paper",
    *,
    trade: bool = False,
    idle_s: float = IDLE_S,
) -> dict[str, Any]:
    """Run one size in a fresh process; add process start to ready as the parent saw it.

    ``trade``: once measured, one order through each connection before it stops;
    ``idle_s``: how long the started service's idle CPU is watched.
    """
    t0 = time.perf_counter()
    extra = ["trade" if trade else "-", str(idle_s)]
    proc = await trio.lowlevel.open_process(
        [python(), "-m", "bench.scale", str(n), str(state_dir), connector, *extra],
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        lines = LineReader(proc.stdout)
        with trio.fail_after(timeout_s):
            line = await lines.line()
        result: dict[str, Any] = json.loads(line)
        # The child prints once ready, so this is spawn -> ready (imports included).
        result["process_ready_s"] = round(time.perf_counter() - t0, 4)
        with trio.fail_after(timeout_s):
            result.update(json.loads(await lines.line()))
        with trio.move_on_after(timeout_s):
            await proc.wait()  # let it shut down on its own
        return result
    finally:
        await stop_process(proc)


async def measure(
    sizes: list[int], *, restart: bool = False, idle_s: float = IDLE_S
) -> dict[str, Any]:
    """Every size, one process each, on a fresh state directory.

    With ``restart``, each size is then started again on the state it left
    (the paper account files and journal exist): what a service restart costs.
    ``idle_s``: how long each started service's idle CPU is watched.
    """
    fresh: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    for n in sizes:
        with short_tempdir("bs-") as tmp:
            fresh.append(await measure_one(n, tmp, idle_s=idle_s))
            if restart:
                again.append(await measure_one(n, tmp, idle_s=idle_s))
    out: dict[str, Any] = {"sizes": fresh}
    if restart:
        out["restart_sizes"] = again
    with short_tempdir("bs-") as tmp:
        out["instant_broker"] = await measure_one(
            max(sizes), tmp, connector="instant", idle_s=idle_s
        )
    return out


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
