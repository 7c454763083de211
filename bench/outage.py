#!/usr/bin/env python3
"""Broker outages of 2, 20 and 90 s with real processes: the service trades again by itself.

Runs ``ult sim alpaca`` (or ``oanda``, ``--broker``) and ``ult serve`` (a
config written for the run, the connection's connect backoff capped at
``--cap`` seconds) as child processes.
For each outage the simulator is killed (SIGKILL), kept away that long, and
started again on the same port. A killed simulator forgets its book (a real
broker's survives), so the script trades back to flat before each outage and
the service's book agrees with the fresh simulator after it.

After the simulator returns, the script sends a 1-share buy every
``--probe-s`` until one is accepted, with no other command, and reports:
the seconds from the simulator's return to that order; what health showed
during the outage (the connection's states, the broker's trading state and
who set it); and whether trading came back to ``active`` by itself. Exit 1
if an outage did not heal within ``--cap`` plus ``--slack`` seconds.

    scripts/outage                 # 2, 20, 90 s; about 3 minutes (python -m bench.outage)
    scripts/outage --outages 2 5 --cap 5 --broker oanda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import trio

from bench.chaos.sims import start_sim
from bench.common import short_tempdir
from bench.ult import start_service, write_config
from ult_actors.client import AsyncClient
from ult_actors.errors import UltError
from ult_actors.testing.process import UltProcess

KEY, SECRET = "outage-key", "outage-secret"
ACCOUNT = "101-001-7777777-001"
#: Seconds between buys while waiting for the first one accepted after an outage.
PROBE_S = 0.2


@dataclass(frozen=True)
class Venue:
    """How to run one simulator and trade on it."""

    sim_args: tuple[str, ...]
    #: Credentials, given to the simulator and the service alike.
    env: dict[str, str]
    #: Extra keys of the ``[brokers.NAME]`` table besides kind and base_url.
    settings: dict[str, str]
    symbol: str
    qty: int


VENUES = {
    "alpaca": Venue(
        sim_args=("--key", KEY, "--secret", SECRET, "--cash", "1000000000"),
        env={"ALPACA_API_KEY": KEY, "ALPACA_API_SECRET": SECRET},
        settings={},
        symbol="AAPL",
        qty=1,
    ),
    "oanda": Venue(
        sim_args=("--token", KEY, "--account", ACCOUNT, "--tick", "0", "--balance", "1000000000"),
        env={"OANDA_API_TOKEN": KEY},
        settings={"account_id": ACCOUNT},
        symbol="EUR_USD",
        qty=1000,
    ),
}


@dataclass
class Outcome:
    """What one outage did."""

    outage_s: float
    #: Seconds from the simulator's return to the first order accepted (None: never).
    first_order_s: float | None = None
    #: States health showed for the connection while the broker was away.
    connection_states: list[str] = field(default_factory=list)
    #: The broker's trading states seen meanwhile, as ``state (set_by)``.
    trading_seen: list[str] = field(default_factory=list)
    #: The broker's trading state once the order was accepted, as ``state (set_by)``.
    trading_after: str = ""
    #: Refusals while probing, by error code.
    refused: dict[str, int] = field(default_factory=dict)

    @property
    def healed_by_itself(self) -> bool:
        return self.first_order_s is not None and self.trading_after.startswith("active")


class Simulator:
    """``ult sim NAME`` as a child process, killed and started again on its port."""

    def __init__(self, base: Path, seed: int, name: str) -> None:
        self.base = base
        self.seed = seed
        self.name = name
        self.port = 0
        self.proc: UltProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        argv = ["--port", str(self.port), "--seed", str(self.seed + self.starts),
                *VENUES[self.name].sim_args]  # fmt: skip
        log = self.base / f"sim-{self.starts}.log"
        self.proc = start_sim(self.name, argv, log, VENUES[self.name].env)
        self.port = self.proc.ports[0]

    def kill(self) -> None:
        if self.proc is not None and self.proc.alive:
            self.proc.kill9()


async def flatten(client: AsyncClient, broker: str) -> None:
    """Sell what the service says it holds at the broker, so a fresh simulator agrees."""
    for position in await client.positions(broker):
        if position.qty > 0:
            await client.submit(position.symbol, "sell", position.qty, broker=broker, wait=True)


async def watch(client: AsyncClient, broker: str, outcome: Outcome, seconds: float) -> None:
    """Look at health twice a second for ``seconds``, noting what it shows of the broker."""
    end = trio.current_time() + seconds
    while trio.current_time() < end:
        try:
            health = await client.health()
        except UltError:
            health = None
        if health is not None:
            for actor in health.actors:
                if actor.name == f"broker.{broker}" and actor.state not in outcome.connection_states:
                    outcome.connection_states.append(actor.state)
            setting = health.broker_trading.get(broker)
            seen = f"{setting.state} ({setting.set_by})" if setting else "?"
            if seen not in outcome.trading_seen:
                outcome.trading_seen.append(seen)
        await trio.sleep(min(0.5, max(0.0, end - trio.current_time())))


async def first_order(
    client: AsyncClient, broker: str, outcome: Outcome, back: float, give_up_s: float
) -> None:
    """Send a buy every ``PROBE_S`` until one is accepted; note how long it took."""
    venue = VENUES[broker]
    while time.monotonic() - back < give_up_s:
        try:
            await client.submit(
                venue.symbol, "buy", venue.qty, broker=broker, wait=True, timeout=10
            )
        except UltError as exc:
            outcome.refused[exc.code] = outcome.refused.get(exc.code, 0) + 1
            await trio.sleep(PROBE_S)
            continue
        outcome.first_order_s = round(time.monotonic() - back, 2)
        setting = (await client.health()).broker_trading.get(broker)
        outcome.trading_after = f"{setting.state} ({setting.set_by})" if setting else "?"
        return



async def run(args: argparse.Namespace) -> list[Outcome]:
    with short_tempdir("uo-") as tmp:
        (tmp / "run").mkdir(mode=0o700)
        broker, venue = args.broker, VENUES[args.broker]
        sim = Simulator(tmp, args.seed, broker)
        sim.start()
        table = {"kind": broker, "base_url": f"http://127.0.0.1:{sim.port}", **venue.settings}
        config = write_config(
            tmp,
            {
                "service": {"default_broker": broker},
                "supervision": {"connect_backoff_cap_s": args.cap},
                "risk": {"max_orders_per_second": 1000},
                f"brokers.{broker}": table,
            },
        )
        service = await start_service(tmp, config, env=venue.env)
        outcomes: list[Outcome] = []
        try:
            async with AsyncClient(service.socket, timeout=30) as client:
                await client.submit(venue.symbol, "buy", venue.qty, broker=broker, wait=True)
                for seconds in args.outages:
                    await flatten(client, broker)
                    outcome = Outcome(outage_s=seconds)
                    sim.kill()
                    await watch(client, broker, outcome, seconds)
                    sim.start()
                    back = time.monotonic()
                    await first_order(client, broker, outcome, back, args.cap + args.slack + 60)
                    outcomes.append(outcome)
                    _print_one(outcome, args)
        finally:
            await service.stop()
            sim.kill()
    return outcomes


def _print_one(outcome: Outcome, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps({**asdict(outcome), "healed_by_itself": outcome.healed_by_itself}))
        return
    took = "never" if outcome.first_order_s is None else f"{outcome.first_order_s:.2f}s"
    print(
        f"outage {outcome.outage_s:g}s: first order accepted {took} after the simulator returned"
        f" (cap {args.cap:g}s); connection during: {', '.join(outcome.connection_states)};"
        f" trading during: {', '.join(outcome.trading_seen)}; after: {outcome.trading_after};"
        f" refused while probing: {outcome.refused or 'none'};"
        f" back to active by itself: {'yes' if outcome.healed_by_itself else 'NO'}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/outage",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Runs on loopback only; leaves nothing behind (a temporary directory).",
    )
    p.add_argument("--outages", type=float, nargs="+", default=[2.0, 20.0, 90.0],
                   help="outage lengths in seconds (default: 2 20 90)")  # fmt: skip
    p.add_argument("--cap", type=float, default=30.0,
                   help="supervision.connect_backoff_cap_s for the run (default: 30)")  # fmt: skip
    p.add_argument("--slack", type=float, default=10.0,
                   help="seconds beyond the cap still counted as healed in time (default: 10)")  # fmt: skip
    p.add_argument("--broker", choices=sorted(VENUES), default="alpaca",
                   help="which simulator to take away (default: alpaca)")  # fmt: skip
    p.add_argument("--seed", type=int, default=7, help="simulator seed")
    p.add_argument("--json", action="store_true", help="one JSON line per outage")
    args = p.parse_args(argv)
    os.environ.pop("ULT_CONFIG", None)
    outcomes = trio.run(run, args)
    late = [
        o for o in outcomes
        if not o.healed_by_itself or (o.first_order_s or 0) > args.cap + args.slack
    ]  # fmt: skip
    return 1 if late else 0


if __name__ == "__main__":
    sys.exit(main())
