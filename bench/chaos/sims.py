"""The loopback broker simulators for ``python -m bench.chaos``: started, broken at random, stopped.

Each simulator runs as its own process (``ult sim NAME --port 0``), outlives
every ``kill -9`` of the service (a broker does not die with its client),
and is broken through its own admin switches:

- ``alpaca``: ``POST /_sim/faults`` (drop, 503, 429, slow, lose_reply, a
  silent stream, a dropped update) and ``POST /_sim/stream/drop``;
- ``oanda``: the same vocabulary and endpoints as Alpaca's;
- ``ib``: the text admin port (``drop``, ``slow-replies``, ``slow-ack``,
  ``lost`` then ``restored``, ``drop-on-order``, ``silent``,
  ``drop-executions``).

The Alpaca and OANDA simulators also enforce their venue's request limits
(``VENUE_LIMITS``): ``real`` (Alpaca 200 requests/min; OANDA 100 requests/s
per connection, 2 new connections/s), which the service's budgets must keep
under (``limit_refusals`` counts the 429s they caused, apart from the 429
faults), ``small`` (a fraction of them: the service meets 429s and must lose
and double nothing) or ``off``. The TWS simulator always enforces TWS's 50
messages a second (error 100, then the socket closed); its clients cut off
for it are counted with the 429s.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from ult_actors.testing.process import UltProcess

SIM_NAMES = ("alpaca", "oanda", "ib")
#: Each limit setting's simulator arguments: Alpaca's, then OANDA's.
VENUE_LIMITS: dict[str, tuple[list[str], list[str]]] = {
    "real": (["--rate-limit", "200"], ["--rate-limit", "100", "--connection-limit", "2"]),
    "small": (["--rate-limit", "60"], ["--rate-limit", "5", "--connection-limit", "2"]),
    "off": ([], []),
}
_KEY, _SECRET = "chaos-key", "chaos-secret"
_TOKEN, _ACCOUNT = "chaos-token", "101-001-7777777-001"


@dataclass
class Sim:
    """One running simulator and what the service needs to reach it."""

    name: str
    proc: UltProcess
    port: int
    admin_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)


def start_sim(name: str, argv: list[str], log: Path, extra_env: dict[str, str]) -> UltProcess:
    """``ult sim NAME ARGV``, its output in ``log``; returns once it printed its ports."""
    sim = UltProcess(["sim", name, *argv], home=log.parent, name=log.stem, env=extra_env, ports=True)
    try:
        sim.start(timeout=30)
    except RuntimeError:
        if sim.alive:
            sim.kill9()
        raise RuntimeError(f"ult sim {name} did not start:\n{sim.log}") from None
    return sim


def start_sims(names: list[str], base: Path, seed: int, limits: str = "real") -> list[Sim]:
    """Start the named simulators on free loopback ports (all or none), with ``limits``."""
    sims: list[Sim] = []
    try:
        _start_each(names, base, seed, sims, VENUE_LIMITS[limits])
    except BaseException:
        stop_sims(sims)
        raise
    return sims


def _start_each(
    names: list[str], base: Path, seed: int, sims: list[Sim], limits: tuple[list[str], list[str]]
) -> None:
    alpaca_limits, oanda_limits = limits
    for name in names:
        log = base / f"sim-{name}.log"
        if name == "alpaca":
            proc = start_sim(
                name,
                ["--port", "0", "--key", _KEY, "--secret", _SECRET, "--seed", str(seed),
                 "--cash", "1000000000", *alpaca_limits],
                log, {},
            )  # fmt: skip
            url = f"http://127.0.0.1:{proc.ports[0]}"
            env = {
                "ALPACA_API_KEY": _KEY,
                "ALPACA_API_SECRET": _SECRET,
                "ALPACA_BASE_URL": url,
                "ALPACA_STREAM_URL": f"ws://127.0.0.1:{proc.ports[0]}/stream",
            }
            sims.append(Sim(name, proc, proc.ports[0], env=env))
        elif name == "oanda":
            creds = {"OANDA_API_TOKEN": _TOKEN, "OANDA_ACCOUNT_ID": _ACCOUNT}
            proc = start_sim(
                name,
                # Heartbeats often enough for the service's short stale_after_s.
                ["--port", "0", "--tick", "0", "--seed", str(seed), "--balance", "1000000000",
                 "--heartbeat", "0.5", *oanda_limits],
                log, creds,
            )  # fmt: skip
            env = {**creds, "OANDA_BASE_URL": f"http://127.0.0.1:{proc.ports[0]}"}
            sims.append(Sim(name, proc, proc.ports[0], env=env))
        elif name == "ib":
            proc = start_sim(
                name, ["--port", "0", "--admin-port", "0", "--tick", "0", "--seed", str(seed)],
                log, {},
            )  # fmt: skip
            env = {"IB_HOST": "127.0.0.1", "IB_PORT": str(proc.ports[0])}
            sims.append(Sim(name, proc, proc.ports[0], admin_port=proc.ports[1], env=env))
        else:
            raise ValueError(f"no simulator called {name!r} (known: {', '.join(SIM_NAMES)})")


def stop_sims(sims: list[Sim]) -> None:
    """Stop the simulators this script started (by their process, nothing else)."""
    for sim in sims:
        sim.proc.signal(signal.SIGTERM)
    for sim in sims:
        try:
            sim.proc.wait_exit(timeout=10)
        except subprocess.TimeoutExpired:
            sim.proc.kill9()


async def _ib(sim: Sim, command: str) -> str:
    assert sim.admin_port is not None
    stream = await trio.open_tcp_stream("127.0.0.1", sim.admin_port)
    async with stream:
        await stream.send_all(command.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode(errors="replace").strip()


_ALPACA = {
    "drop": {"kind": "drop"},
    "http_5xx": {"kind": "status", "status": 503},
    "http_429": {"kind": "rate_limit", "retry_after_s": 0.2, "retry_after_header": True},
    "slow": {"kind": "slow", "delay_s": 0.3},
    "lose_reply": {"kind": "lose_reply", "method": "POST", "path": "/v2/orders"},
    # The stream stays open and says nothing (no pongs, no heartbeats) until found stale.
    "silent": {"kind": "silent"},
    # One update never streamed; the venue's REST record still has it.
    "drop_event": {"kind": "drop_events", "count": 1},
}
# The OANDA simulator speaks the Alpaca simulator's fault vocabulary.
_OANDA = {**_ALPACA, "lose_reply": {"kind": "lose_reply", "method": "POST"}}
#: drop_on_order: the socket drops right after TWS reads an order, before its
#: answer (with connectivity_lost: an order held and its acknowledgement lost).
#: silent: TWS stops answering (long enough, mostly, for the service's probe to give
#: the socket up); drop_executions: fills meanwhile are not pushed, only listed.
_IB = (
    "drop",
    "slow_replies",
    "slow_ack",
    "connectivity_lost",
    "drop_on_order",
    "silent",
    "drop_executions",
)


async def _one_fault(
    http: httpx.AsyncClient, sim: Sim, rng: random.Random, nursery: trio.Nursery
) -> str:
    base = f"http://127.0.0.1:{sim.port}"
    if sim.name in ("alpaca", "oanda"):
        faults = _ALPACA if sim.name == "alpaca" else _OANDA
        kind = rng.choice([*faults, "stream_drop"])
        if kind == "stream_drop":
            (await http.post(f"{base}/_sim/stream/drop")).raise_for_status()
        else:
            (await http.post(f"{base}/_sim/faults", json=faults[kind])).raise_for_status()
        return kind
    kind = rng.choice(_IB)
    if kind == "drop":
        await _ib(sim, "drop")
    elif kind == "drop_on_order":
        await _ib(sim, "drop-on-order 1")
    else:
        on, off = {
            "slow_replies": ("slow-replies 0.3", "slow-replies 0"),
            "slow_ack": ("slow-ack 0.3", "slow-ack 0"),
            "connectivity_lost": ("lost", "restored"),
            "silent": ("silent on", "silent off"),
            "drop_executions": ("drop-executions on", "drop-executions off"),
        }[kind]
        await _ib(sim, on)
        lasts = rng.uniform(2.0, 5.0) if kind == "silent" else rng.uniform(0.2, 1.0)

        async def later() -> None:
            await trio.sleep(lasts)
            await _ib(sim, off)

        nursery.start_soon(later)
    return kind


async def inject_faults(
    sims: list[Sim], rng: random.Random, per_s: float, counts: Counter[str]
) -> None:
    """Break a random simulator, ``per_s`` times a second on average, until cancelled."""
    if not sims or per_s <= 0:
        await trio.sleep_forever()
    async with httpx.AsyncClient(timeout=5) as http, trio.open_nursery() as nursery:
        while True:
            await trio.sleep(rng.expovariate(per_s))
            sim = rng.choice(sims)
            try:
                kind = await _one_fault(http, sim, rng, nursery)
            except (httpx.HTTPError, OSError) as exc:
                counts[f"{sim.name}:admin_error"] += 1
                print(f"chaos: could not break {sim.name}: {exc}", file=sys.stderr)
                continue
            counts[f"{sim.name}:{kind}"] += 1


async def limit_refusals(sims: list[Sim]) -> dict[str, int]:
    """The 429s each HTTP simulator answered because a venue limit was reached (not faults)."""
    out: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        for sim in sims:
            if sim.name in ("alpaca", "oanda"):
                state = (await http.get(f"http://127.0.0.1:{sim.port}/_sim/state")).json()
                out[sim.name] = int(state.get("rate_limited", 0))
            else:  # TWS: clients cut off with error 100 for their message rate
                found = re.search(r"rate_violations=(\d+)", await _ib(sim, "status"))
                out[sim.name] = int(found.group(1)) if found else 0
    return out


_NO_LIMITS = {
    "alpaca": {"per_minute": 0},
    "oanda": {"per_second": 0, "new_connections_per_second": 0},
}


async def disarm(sims: list[Sim]) -> None:
    """Clear every switch and limit, so the end of the run (and reading back) can settle."""
    async with httpx.AsyncClient(timeout=5) as http:
        for sim in sims:
            base = f"http://127.0.0.1:{sim.port}"
            if sim.name in ("alpaca", "oanda"):
                (await http.delete(f"{base}/_sim/faults")).raise_for_status()
                limits = _NO_LIMITS[sim.name]
                (await http.post(f"{base}/_sim/rate-limit", json=limits)).raise_for_status()
            else:
                for command in (
                    "slow-replies 0",
                    "slow-ack 0",
                    "drop-on-order 0",
                    "silent off",
                    "drop-executions off",
                    "restored",
                ):
                    await _ib(sim, command)


async def orders_created(sim: Sim) -> int | None:
    """How many orders an HTTP simulator (Alpaca, OANDA) made in all: its own counter
    in ``GET /_sim/state``, whatever client order ids they carry."""
    async with httpx.AsyncClient(timeout=5) as http:
        state = (await http.get(f"http://127.0.0.1:{sim.port}/_sim/state")).json()
    value = state.get("orders")
    return int(value) if value is not None else None


async def ib_order_refs(sim: Sim) -> list[str]:
    """The order ref (our client order id) of every order the TWS simulator holds,
    held ones included, from its admin port (``orders``)."""
    answer = await _ib(sim, "orders")
    if not answer.startswith("ok "):
        raise RuntimeError(f"ib simulator: orders: {answer}")
    return [str(o["order_ref"]) for o in json.loads(answer[3:])]
