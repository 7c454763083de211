"""ult: the real service as its own process, driven through ``ult_actors.client.AsyncClient``.

The service is ``ult serve`` with a config written for the run: the paper
broker matching inside ``submit`` (``latency_ms = 0``), risk limits set (so
every check runs; none is near), the journal as configured by default, logs
at the default level (info) going to a file, as a systemd journal would take
them. The client is the library users would use, in this process.

- sequential: one ``submit`` at a time, submit -> ack (the accepted/filled
  order coming back), p50/p99/p99.9;
- pipelined: each client runs ``window`` tasks that submit in a loop, so
  ``window`` orders are in flight per connection; orders answered per second
  over all clients, and the latency each order saw under that load.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from bench_common import Budget, child_env, latency_summary, short_tempdir, stop_process


def missing() -> str | None:
    """What the ult section still lacks, or None when it can run."""
    needs = {
        "ult_actors.client": "the client library",
        "ult_actors.ipc.server": "the IPC server",
        "ult_actors.brokers.paper": "the paper broker",
    }
    absent = [what for mod, what in needs.items() if importlib.util.find_spec(mod) is None]
    return f"not written yet: {', '.join(absent)}" if absent else None


RISK_LIMITS = {
    # Every limit is checked on every order; none is close to being hit.
    "max_order_qty": 1_000_000,
    "max_position_per_symbol": 1_000_000_000,
    "max_open_orders": 1_000_000,
    "max_orders_per_second": 10_000_000,
    "daily_loss_limit": 1_000_000_000_000,
}


def write_config(tmp: Path, *, extra_brokers: str = "") -> Path:
    """The service config of a benchmark run; everything lives under ``tmp``."""
    lines = [
        "[service]",
        f'state_dir = "{tmp / "state"}"',
        "",
        "[ipc]",
        f'socket = "{tmp / "run" / "ult.sock"}"',
        "",
        "[risk]",
        *(f"{k} = {v}" for k, v in RISK_LIMITS.items()),
        "",
        "[brokers.paper]",
        'kind = "paper"',
        "latency_ms = 0",
        "starting_cash = 1000000000000",  # every order of a full run is a buy
    ]
    path = tmp / "ult.toml"
    path.write_text("\n".join(lines) + "\n" + extra_brokers)
    return path


class RunningService:
    """``ult serve`` in a child process, with its socket and log file."""

    def __init__(self, proc: trio.Process, socket: Path, log: Path, ready_s: float) -> None:
        self.proc = proc
        self.socket = socket
        self.log = log
        self.ready_s = ready_s

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def start_service(
    tmp: Path, config: Path, *, env: dict[str, str] | None = None, timeout_s: float = 60.0
) -> RunningService:
    """Start ``ult serve`` and wait until a client's ping is answered."""
    from ult_actors.client import AsyncClient, ServiceUnreachable

    socket = tmp / "run" / "ult.sock"
    log_path = tmp / "serve.log"
    log = log_path.open("wb")
    t0 = time.perf_counter()
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "ult_actors.cli", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env(ULT_LOG_LEVEL="info", **(env or {})),
    )
    log.close()
    try:
        with trio.fail_after(timeout_s):
            while True:
                if proc.returncode is not None or proc.poll() is not None:
                    text = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"ult serve exited {proc.returncode}:\n{text}")
                try:
                    async with AsyncClient(socket, timeout=10) as client:
                        await client.ping()
                    break
                except ServiceUnreachable:
                    await trio.sleep(0.02)  # the socket is not there yet: poll, bounded above
    except BaseException:
        await stop_process(proc)
        raise
    return RunningService(proc, socket, log_path, time.perf_counter() - t0)


async def sequential(socket: Path, budget: Budget) -> dict[str, Any]:
    """One submit at a time through one client."""
    from ult_actors.client import AsyncClient

    samples: list[int] = []
    clock = time.perf_counter_ns
    stop_at = clock() + int(budget.seconds * 1e9)
    async with AsyncClient(socket, timeout=30) as client:
        for _ in range(budget.count):
            t0 = clock()
            await client.submit("AAPL", "buy", 1)
            t1 = clock()
            samples.append(t1 - t0)
            if t1 > stop_at:
                break
    return latency_summary(samples)


async def pipelined(socket: Path, budget: Budget, *, clients: int, window: int) -> dict[str, Any]:
    """``clients`` connections, ``window`` submitting tasks each; orders/s over all."""
    from ult_actors.client import AsyncClient

    samples: list[int] = []
    left = budget.count
    clock = time.perf_counter_ns
    stop_at = clock() + int(budget.seconds * 1e9)

    async def worker(client: AsyncClient) -> None:
        nonlocal left
        while left > 0 and clock() < stop_at:
            left -= 1
            t0 = clock()
            await client.submit("AAPL", "buy", 1)
            samples.append(clock() - t0)

    async def one_client() -> None:
        async with AsyncClient(socket, timeout=60) as client, trio.open_nursery() as nursery:
            for _ in range(window):
                nursery.start_soon(worker, client)

    t0 = clock()
    with trio.fail_after(budget.seconds + 120):
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(one_client)
    elapsed = (clock() - t0) / 1e9
    summary = latency_summary(samples)
    return {
        "clients": clients,
        "window": window,
        "n": len(samples),
        "per_s": round(len(samples) / elapsed, 1),
        "p50_us": summary["p50_us"],
        "p99_us": summary["p99_us"],
    }


async def measure(plan: Any) -> dict[str, Any]:
    """Start the service, warm it up, then sequential and pipelined submits."""
    from ult_actors.client import AsyncClient

    with short_tempdir("bu-") as tmp:
        (tmp / "run").mkdir(mode=0o700)
        config = write_config(tmp)
        service = await start_service(tmp, config)
        try:
            await sequential(service.socket, Budget(min(300, plan.ult_sequential.count), 10.0))
            result: dict[str, Any] = {
                "process_ready_s": round(service.ready_s, 3),
                "sequential": await sequential(service.socket, plan.ult_sequential),
                "pipelined": {},
            }
            for clients in plan.clients:
                result["pipelined"][str(clients)] = await pipelined(
                    service.socket, plan.ult_pipelined, clients=clients, window=plan.window
                )
            async with AsyncClient(service.socket, timeout=30) as client:
                health = await client.health()
            result["actors_running"] = sum(1 for a in health.actors if a.state == "running")
            result["actors_total"] = len(health.actors)
            result["setup"] = (
                "ult serve child process, paper latency_ms=0, risk limits on,"
                " journal default (journal.enabled=true), log level info to a file"
            )
        except BaseException:
            tail = service.log_tail()
            if tail:
                print(f"ult serve log (tail):\n{tail}", file=sys.stderr)
            raise
        finally:
            await stop_process(service.proc, grace_s=15.0)
    return result
