"""peer: alpaca-py straight to ``ult sim alpaca`` against the same order through ult.

The simulator runs as its own process on 127.0.0.1 (any free port). Then,
one order at a time, a 1-share AAPL market buy:

- **direct**: alpaca-py's ``TradingClient`` (``url_override`` pointing at the
  simulator), ``submit_order`` -> its reply (the order accepted);
- **via_ult**: ``ult serve`` with an ``alpaca`` broker pointed at the same
  simulator, ult's blocking ``Client.submit(..., broker="alpaca")`` -> the
  order accepted, which ult returns once the simulator's REST reply is in.

Both clients are blocking, as a script using either would be; each loop runs
in a worker thread so the bench's trio loop stays free.

``measure_drop`` (the restart section) uses the same pair of processes:
the simulator drops the next ``POST /v2/orders`` connection, or cuts every
``trade_updates`` stream, and we time how long until an order gets through
again.
"""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from bench.common import (
    Budget,
    CpuMeter,
    child_env,
    latency_summary,
    short_tempdir,
)
from ult_actors.testing.process import UltProcess

KEY = "bench-key"
SECRET = "bench-secret"  # a throwaway pair the loopback simulator is told to accept


def missing() -> str | None:
    """What the peer section still lacks, or None when it can run."""
    needs = {
        "ult_actors.sim.alpaca.server": "the Alpaca simulator",
        "ult_actors.brokers.alpaca.connector": "the Alpaca connector",
        "ult_actors.client": "the client library",
        "alpaca": "alpaca-py (pip install -e '.[bench]')",
    }
    absent = [what for mod, what in needs.items() if importlib.util.find_spec(mod) is None]
    return f"missing: {', '.join(absent)}" if absent else None


@asynccontextmanager
async def running_sim(*, fill_delay_s: float, fill_slices: int) -> AsyncIterator[str]:
    """``ult sim alpaca`` on a free loopback port; yields its base URL."""
    async with running_sim_process(fill_delay_s=fill_delay_s, fill_slices=fill_slices) as sim:
        yield f"http://127.0.0.1:{sim.ports[0]}"


@asynccontextmanager
async def running_sim_process(
    *, fill_delay_s: float, fill_slices: int
) -> AsyncIterator[UltProcess]:
    """``ult sim alpaca`` on a free loopback port, running."""
    sim = UltProcess(
        ["sim", "alpaca", "--port", "0", "--key", KEY, "--secret", SECRET,
         "--cash", "1000000000000",
         "--fill-delay", str(fill_delay_s), "--fill-slices", str(fill_slices)],
        name="sim", ports=True, env=child_env(),
    )  # fmt: skip
    try:
        await sim.astart(timeout=30)
        yield sim
    finally:
        await sim.astop(timeout=5.0)
        sim.cleanup()


#: Orders the peer section's service may take without waiting for its request budget.
UNPACED_ORDERS = 1_000_000


def write_ult_config(tmp: Path, base_url: str, *, journal: bool = True) -> Path:
    """The config of ``ult serve`` with the paper broker and an ``alpaca`` broker at ``base_url``."""
    from bench.ult import write_config

    overrides: dict[str, dict[str, Any]] = {
        # One order at a time is a latency figure, not a pacing one: alpaca-py
        # has no request budget and the simulator no limit, so the budget's
        # bucket is made big enough never to wait (Alpaca's default of 20 held
        # every order after the 20th for a token, ~330 ms); its bookkeeping stays on the path.
        "brokers.alpaca": {"kind": "alpaca", "base_url": base_url, "request_burst": UNPACED_ORDERS}
    }
    if not journal:
        overrides["journal"] = {"enabled": False}
    return write_config(tmp, overrides)


@asynccontextmanager
async def running_ult_on(
    base_url: str, *, profile: Path | None = None, journal: bool = True
) -> AsyncIterator[Any]:
    """``ult serve`` with the paper broker and an ``alpaca`` broker at ``base_url``."""
    from bench.ult import start_service

    with short_tempdir("bp-") as tmp:
        (tmp / "run").mkdir(mode=0o700)
        config = write_ult_config(tmp, base_url, journal=journal)
        service = await start_service(
            tmp,
            config,
            env={"ALPACA_API_KEY": KEY, "ALPACA_API_SECRET": SECRET},
            profile=profile,
        )
        try:
            yield service
        finally:
            await service.stop()


def _direct_loop(base_url: str, budget: Budget) -> list[int]:
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    client = TradingClient(KEY, SECRET, paper=True, url_override=base_url)
    order = MarketOrderRequest(
        symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
    )
    samples: list[int] = []
    clock = time.perf_counter_ns
    stop_at = clock() + int(budget.seconds * 1e9)
    for _ in range(budget.count):
        t0 = clock()
        client.submit_order(order)
        t1 = clock()
        samples.append(t1 - t0)
        if t1 > stop_at:
            break
    return samples


def _via_ult_loop(socket: Path, budget: Budget) -> list[int]:
    from ult_actors.client import Client

    samples: list[int] = []
    clock = time.perf_counter_ns
    stop_at = clock() + int(budget.seconds * 1e9)
    with Client(socket, timeout=30) as client:
        for _ in range(budget.count):
            t0 = clock()
            client.submit("AAPL", "buy", 1, broker="alpaca")
            t1 = clock()
            samples.append(t1 - t0)
            if t1 > stop_at:
                break
    return samples


async def _bounded(loop: Any, target: Any, budget: Budget) -> list[int]:
    """Run a blocking client loop in a thread, given up on (not waited for) if it hangs."""
    with trio.fail_after(budget.seconds + 60):
        result: list[int] = await trio.to_thread.run_sync(
            loop, target, budget, abandon_on_cancel=True
        )
    return result


async def measure(plan: Any) -> dict[str, Any]:
    """p50 of alpaca-py direct against through ult, one order at a time, same simulator.

    Besides latency: the CPU per order of the simulator (both ways) and of
    ``ult serve`` (through ult), from ``/proc``; they share this machine's cores.
    """
    warm = Budget(min(30, plan.peer.count), 10.0)
    async with running_sim_process(fill_delay_s=0.05, fill_slices=1) as sim:
        base_url = f"http://127.0.0.1:{sim.ports[0]}"
        sim_pid = sim.proc.pid if sim.proc is not None else None
        await _bounded(_direct_loop, base_url, warm)
        sim_cpu = CpuMeter(sim_pid)
        direct = await _bounded(_direct_loop, base_url, plan.peer)
        direct_sim_us = sim_cpu.per_message_us(len(direct))
        async with running_ult_on(base_url) as service:
            await _bounded(_via_ult_loop, service.socket, warm)
            sim_cpu, ult_cpu = CpuMeter(sim_pid), CpuMeter(service.pid)
            via = await _bounded(_via_ult_loop, service.socket, plan.peer)
            via_sim_us, via_ult_us = (
                sim_cpu.per_message_us(len(via)),
                ult_cpu.per_message_us(len(via)),
            )
        out: dict[str, Any] = {}
        if plan.peer_journal_off:
            # How much of the difference is the journal's fsyncs.
            async with running_ult_on(base_url, journal=False) as service:
                await _bounded(_via_ult_loop, service.socket, warm)
                out["via_ult_journal_off"] = latency_summary(
                    await _bounded(_via_ult_loop, service.socket, plan.peer)
                )
    return {
        **out,
        "direct": {**latency_summary(direct), "sim_cpu_us": direct_sim_us},
        "via_ult": {**latency_summary(via), "sim_cpu_us": via_sim_us, "server_cpu_us": via_ult_us},
        "setup": "ult sim alpaca child process; alpaca-py TradingClient vs ult Client"
        " (blocking, one order at a time); ult journal default, risk limits on",
    }


def _post(base_url: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # loopback only
        return json.loads(reply.read() or b"null")


async def measure_drop(plan: Any) -> dict[str, Any]:
    """Simulator drops its connections -> the first order through ult again.

    ``rest``: the next ``POST /v2/orders`` connection is dropped unanswered,
    then an order is submitted (so the broker actor meets the drop and
    recovers by its retry policy); measured to that order's acknowledgement.
    ``stream``: every ``trade_updates`` connection is cut, then an order is
    submitted with ``wait=True``; measured to its fill reported through ult
    (the connector reconnects the stream or sweeps over REST).
    """
    from ult_actors.client import AsyncClient

    rest: list[int] = []
    stream: list[int] = []
    baseline: list[int] = []
    fault = {"kind": "drop", "count": 1, "method": "POST", "path": "/v2/orders"}
    async with (
        running_sim(fill_delay_s=0.0, fill_slices=1) as base_url,
        running_ult_on(base_url) as service,
        AsyncClient(service.socket, timeout=60) as client,
    ):
        for _ in range(3):  # warm: connector pool and stream up
            await client.submit("AAPL", "buy", 1, broker="alpaca", wait=True, timeout=30)
        for _ in range(plan.drop_samples):
            with trio.fail_after(60):
                t0 = time.perf_counter_ns()
                await client.submit("AAPL", "buy", 1, broker="alpaca", wait=True)
                baseline.append(time.perf_counter_ns() - t0)

                await trio.to_thread.run_sync(_post, base_url, "/_sim/faults", fault)
                t0 = time.perf_counter_ns()
                await client.submit("AAPL", "buy", 1, broker="alpaca")
                rest.append(time.perf_counter_ns() - t0)

                await trio.to_thread.run_sync(_post, base_url, "/_sim/stream/drop", {})
                t0 = time.perf_counter_ns()
                await client.submit("AAPL", "buy", 1, broker="alpaca", wait=True)
                stream.append(time.perf_counter_ns() - t0)
    return {
        "to_order": latency_summary(rest),
        "stream_cut_to_fill": latency_summary(stream),
        "no_fault_submit_to_fill": latency_summary(baseline),
        "setup": "ult sim alpaca (fill delay 0) + ult serve with an alpaca broker;"
        " rest = next POST /v2/orders connection dropped, retried by the broker actor"
        " (retry delay_ms default 200, full jitter)",
    }
