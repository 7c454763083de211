"""peer: alpaca-py straight to ``ult sim alpaca`` against the same order through ult.

Each side has a simulator of its own, a process on 127.0.0.1 (any free
port), started alike. Then, one order at a time, a 1-share AAPL market buy:

- **direct**: alpaca-py's ``TradingClient`` (``url_override`` pointing at its
  simulator), ``submit_order`` -> its reply (the order accepted);
- **via_ult**: ``ult serve`` with an ``alpaca`` broker pointed at the other
  simulator, ult's blocking ``Client.submit(..., broker="alpaca")`` -> the
  order accepted, which ult returns once the simulator's REST reply is in.

The two sides take turns, ``ROUNDS`` rounds of a share of the budget each,
so a change in the machine's load between them hits both alike (the
direct-then-via runs of before saw alpaca-py's p50 move 1.3-4.1 ms with other
people's work); two simulators, so ult's ``trade_updates`` never carries
alpaca-py's orders. Both clients are blocking, as a script using either
would be; each loop runs in a worker thread so the bench's trio loop stays
free.

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
    child_env,
    cpu_seconds,
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


#: Turns each side takes (each with its share of the budget).
ROUNDS = 3

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
    """p50 of alpaca-py direct against through ult, one order at a time, taking turns.

    Besides latency: the CPU per order of each side's simulator and of
    ``ult serve`` (through ult), from ``/proc``; they share this machine's cores.
    """
    warm = Budget(min(30, plan.peer.count), 10.0)
    share = Budget(max(1, plan.peer.count // ROUNDS), plan.peer.seconds / ROUNDS)
    async with (
        running_sim_process(fill_delay_s=0.05, fill_slices=1) as direct_sim,
        running_sim_process(fill_delay_s=0.05, fill_slices=1) as ult_sim,
    ):
        direct_url = f"http://127.0.0.1:{direct_sim.ports[0]}"
        async with running_ult_on(f"http://127.0.0.1:{ult_sim.ports[0]}") as service:
            direct_side = _Side(_direct_loop, direct_url, direct_sim)
            via_side = _Side(_via_ult_loop, service.socket, ult_sim, service.pid)
            for side in (direct_side, via_side):
                await _bounded(side.loop, side.target, warm)
            for _ in range(ROUNDS):
                for side in (direct_side, via_side):
                    await side.take_turn(share)
        out: dict[str, Any] = {}
        if plan.peer_journal_off:
            # How much of the difference is the journal's fsyncs.
            async with running_ult_on(
                f"http://127.0.0.1:{ult_sim.ports[0]}", journal=False
            ) as service:
                await _bounded(_via_ult_loop, service.socket, warm)
                out["via_ult_journal_off"] = latency_summary(
                    await _bounded(_via_ult_loop, service.socket, plan.peer)
                )
    return {
        **out,
        "direct": {**latency_summary(direct_side.samples), "sim_cpu_us": direct_side.sim_us()},
        "via_ult": {
            **latency_summary(via_side.samples),
            "sim_cpu_us": via_side.sim_us(),
            "server_cpu_us": via_side.server_us(),
        },
        "rounds": ROUNDS,
        "setup": "one ult sim alpaca child process per side; alpaca-py TradingClient vs ult"
        f" Client (blocking, one order at a time), {ROUNDS} rounds taking turns;"
        " ult journal default, risk limits on",
    }


class _Side:
    """One side of the comparison: its loop, its simulator, its samples and CPU so far."""

    def __init__(self, loop: Any, target: Any, sim: UltProcess, server_pid: int | None = None):
        self.loop = loop
        self.target = target
        self.sim_pid = sim.proc.pid if sim.proc is not None else None
        self.server_pid = server_pid
        self.samples: list[int] = []
        self.sim_s = 0.0
        self.server_s = 0.0

    async def take_turn(self, budget: Budget) -> None:
        sim0 = cpu_seconds(self.sim_pid) if self.sim_pid else 0.0
        server0 = cpu_seconds(self.server_pid) if self.server_pid else 0.0
        self.samples += await _bounded(self.loop, self.target, budget)
        if self.sim_pid:
            self.sim_s += cpu_seconds(self.sim_pid) - sim0
        if self.server_pid:
            self.server_s += cpu_seconds(self.server_pid) - server0

    def sim_us(self) -> float | None:
        """The simulator's CPU per order over every turn."""
        return _per_order_us(self.sim_s, len(self.samples)) if self.sim_pid else None

    def server_us(self) -> float | None:
        """``ult serve``'s CPU per order over every turn (the via side)."""
        return _per_order_us(self.server_s, len(self.samples)) if self.server_pid else None


def _per_order_us(seconds: float, orders: int) -> float | None:
    return round(seconds / orders * 1e6, 1) if orders else None


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
