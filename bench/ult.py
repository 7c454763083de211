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

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from bench import commit as bench_commit
from bench.common import (
    Budget,
    ClientCpuMeter,
    CpuMeter,
    child_env,
    latency_summary,
    short_tempdir,
)
from ult_actors.testing.process import UltProcess, ult_command

if TYPE_CHECKING:
    from ult_actors.client import AsyncClient


def missing() -> str | None:
    """What the ult section still lacks, or None when it can run."""
    needs = {
        "ult_actors.client": "the client library",
        "ult_actors.ipc.server": "the IPC server",
        "ult_actors.brokers.paper.connector": "the paper broker",
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


FULL_SYNC = "journal synchronous=full"

#: Configurations measured besides the default, each removing one cost, so the
#: figures show what every layer of durability costs. (label, TOML overrides)
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    # The goals table's "full" row: sequential p50 less the floor's and one bare commit's.
    FULL_SYNC: {"journal": {"synchronous": "full"}},
    "journal synchronous=normal": {"journal": {"synchronous": "normal"}},
    "journal off": {"journal": {"enabled": False}},
    # Less than the default by what the paper account's file costs.
    "paper account in memory": {"brokers.paper": {"state_path": ":memory:"}},
    "journal off, paper account in memory": {
        "journal": {"enabled": False},
        "brokers.paper": {"state_path": ":memory:"},
    },
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def write_config(
    tmp: Path,
    overrides: dict[str, dict[str, Any]] | None = None,
    *,
    extra_brokers: str = "",
) -> Path:
    """The service config of a benchmark run; everything lives under ``tmp``."""
    tables: dict[str, dict[str, Any]] = {
        "service": {"state_dir": str(tmp / "state")},
        "ipc": {"socket": str(tmp / "run" / "ult.sock")},
        "risk": dict(RISK_LIMITS),
        "brokers.paper": {
            "kind": "paper",
            "latency_ms": 0,
            "starting_cash": 1_000_000_000_000,  # every order of a full run is a buy
        },
    }
    for table, values in (overrides or {}).items():
        tables.setdefault(table, {}).update(values)
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    path = tmp / "ult.toml"
    path.write_text("\n".join(lines) + extra_brokers)
    return path


class RunningService:
    """``ult serve`` in a child process, with its socket and log file."""

    def __init__(self, proc: UltProcess, socket: Path, log: Path, ready_s: float, pid: int) -> None:
        self.proc = proc
        self.socket = socket
        self.log = log
        self.ready_s = ready_s
        #: The service's own pid (``proc`` is py-spy when profiling).
        self.pid = pid

    async def stop(self) -> None:
        """SIGTERM the service itself (py-spy, if profiling, then writes its file)."""
        assert self.proc.proc is not None
        if self.proc.alive and self.pid != self.proc.proc.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await self.proc.await_exit(timeout=30)
        await self.proc.astop(timeout=15.0)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def start_service(
    tmp: Path,
    config: Path,
    *,
    env: dict[str, str] | None = None,
    timeout_s: float = 60.0,
    profile: Path | None = None,
) -> RunningService:
    """Start ``ult serve`` and wait until a client's ping is answered.

    With ``profile`` (a file path), the service runs under ``py-spy record``
    and its collapsed stacks are written there when it stops.
    """
    from ult_actors.client import AsyncClient

    socket = tmp / "run" / "ult.sock"
    program = ult_command()
    if profile is not None:
        py_spy = Path(sys.executable).parent / "py-spy"
        if not py_spy.exists():
            raise RuntimeError("--profile needs py-spy: pip install -e '.[bench]'")
        program = [str(py_spy), "record", "--format", "raw", "--rate", "250", "--threads",
                   "--output", str(profile), "--", *program]  # fmt: skip
    proc = UltProcess(
        ["serve", "--config", str(config)],
        program=program,
        home=tmp,
        name="serve",
        socket=socket,
        env=child_env(**{"ULT_LOG_LEVEL": "info", **(env or {})}),
    )
    t0 = time.perf_counter()
    try:
        await proc.astart(timeout=timeout_s)
        async with AsyncClient(socket, timeout=10) as client:
            pid = (await client.health()).pid
    except BaseException:
        await proc.astop(timeout=5.0)
        raise
    return RunningService(proc, socket, proc.log_path, time.perf_counter() - t0, pid)


def connect(target: Path | str, timeout: float) -> AsyncClient:
    """A client of the service at a socket path, or at a ``nats://`` URL."""
    from ult_actors.client import AsyncClient

    if isinstance(target, str) and target.startswith(("nats://", "tls://")):
        return AsyncClient(url=target, timeout=timeout)
    return AsyncClient(target, timeout=timeout)


async def sequential(
    socket: Path | str, budget: Budget, *, server_pid: int | None = None
) -> dict[str, Any]:
    """One submit at a time through one client (``socket``: a path or a NATS URL)."""
    cpu = CpuMeter(server_pid)
    samples: list[int] = []
    clock = time.perf_counter_ns
    stop_at = clock() + int(budget.seconds * 1e9)
    with trio.fail_after(budget.seconds + 60):
        async with connect(socket, timeout=30) as client:
            client_cpu = ClientCpuMeter()
            for _ in range(budget.count):
                t0 = clock()
                await client.submit("AAPL", "buy", 1)
                t1 = clock()
                samples.append(t1 - t0)
                if t1 > stop_at:
                    break
            client_cpu_us = client_cpu.per_message_us(len(samples))
    return {
        **latency_summary(samples),
        "server_cpu_us": cpu.per_message_us(len(samples)),
        "client_cpu_us": client_cpu_us,
    }


async def pipelined(
    socket: Path | str,
    budget: Budget,
    *,
    clients: int,
    window: int,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """``clients`` connections, ``window`` submitting tasks each; orders/s over all."""

    cpu = CpuMeter(server_pid)
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
        async with connect(socket, timeout=60) as client, trio.open_nursery() as nursery:
            for _ in range(window):
                nursery.start_soon(worker, client)

    t0 = clock()
    client_cpu = ClientCpuMeter()
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
        "server_cpu_us": cpu.per_message_us(len(samples)),
        "client_cpu_us": client_cpu.per_message_us(len(samples)),
    }


async def measure_config(
    plan: Any,
    overrides: dict[str, dict[str, Any]] | None,
    *,
    clients: tuple[int, ...],
    profile: Path | None = None,
) -> dict[str, Any]:
    """Start one service configuration, warm it up, then sequential and pipelined submits."""
    from ult_actors.client import AsyncClient

    with short_tempdir("bu-") as tmp:
        (tmp / "run").mkdir(mode=0o700)
        config = write_config(tmp, overrides)
        service = await start_service(tmp, config, profile=profile)
        try:
            await sequential(service.socket, Budget(min(300, plan.ult_sequential.count), 10.0))
            result: dict[str, Any] = {
                "process_ready_s": round(service.ready_s, 3),
                "sequential": await sequential(
                    service.socket, plan.ult_sequential, server_pid=service.pid
                ),
                "pipelined": {},
            }
            for n in clients:
                result["pipelined"][str(n)] = await pipelined(
                    service.socket,
                    plan.ult_pipelined,
                    clients=n,
                    window=plan.window,
                    server_pid=service.pid,
                )
            async with AsyncClient(service.socket, timeout=30) as client:
                health = await client.health()
            result["actors_running"] = sum(1 for a in health.actors if a.state == "running")
            result["actors_total"] = len(health.actors)
        except BaseException:
            tail = service.log_tail()
            if tail:
                print(f"ult serve log (tail):\n{tail}", file=sys.stderr)
            raise
        finally:
            await service.stop()
    if profile is not None:
        result["profile"] = str(profile)
    return result


async def measure(plan: Any, profile_dir: Path | None = None) -> dict[str, Any]:
    """The default configuration (the figures the goals use), then the cost ladder.

    A bare WAL commit (``bench.commit``) is measured just before the
    ``synchronous=full`` configuration, so the goals table can take one
    fsync off that configuration's latency with both from the same minute.
    """
    from ult_actors.config import JournalSection

    profile = profile_dir / "ult-serve.txt" if profile_dir else None
    result = await measure_config(plan, None, clients=plan.clients, profile=profile)
    result["setup"] = (
        "ult serve child process, paper latency_ms=0, risk limits on, journal default"
        f" (SQLite, synchronous={JournalSection().synchronous}), log level info to a file"
    )
    result["variants"] = {}
    for label in plan.ult_variants:
        if label == FULL_SYNC:
            result["bare_commit"] = await bench_commit.measure(plan.commit)
        variant_profile = None
        if profile_dir:
            variant_profile = profile_dir / ("ult-serve-" + label.replace(" ", "_").replace(",", "") + ".txt")
        result["variants"][label] = await measure_config(
            plan, VARIANTS[label], clients=plan.clients[:1], profile=variant_profile
        )
    return result
