"""silent_stream: how long an update stream that went silent takes to be found, against its rule.

Issue 18: a stream that stays connected but says nothing (no updates, no
heartbeats, no pongs) must be treated as lost within 2x its ``stale_after_s``.
Each sample runs the simulator in process on 127.0.0.1, connects the real
connector with ``stale_after_s`` = S, lets the stream run, then arms the
simulator's ``silent`` fault (the open stream stays open and sends nothing)
and times, on the real clock, from the fault to the connector giving the
stream up: OANDA's and IB's ``stream_updates`` raising (the broker actor
then restarts), Alpaca's connector reporting the stream lost (it reconnects
by itself). TWS sends nothing while nothing happens, so IB's rule is a probe
(``reqCurrentTime``) after S of silence, answered within ``probe_timeout_s``
(S/6 here, as the defaults 5 s for 30 s). Reported per venue and S: p50 and
max, and max / S (goal: <= 2).

    python -m bench.silent_stream --stale 1 2 --samples 5
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
from collections.abc import Awaitable, Callable
from functools import partial

import structlog
import trio

from ult_actors.brokers.alpaca.connector import AlpacaConnector
from ult_actors.brokers.alpaca.settings import AlpacaSettings
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.settings import IbSettings
from ult_actors.brokers.oanda.connector import OandaConnector
from ult_actors.brokers.oanda.settings import OandaSettings
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import OrderUpdate
from ult_actors.secrets import Secret
from ult_actors.sim.alpaca.faults import Fault as AlpacaFault
from ult_actors.sim.alpaca.server import make_alpaca_sim, serve_alpaca_sim
from ult_actors.sim.ib import TwsSimulator
from ult_actors.sim.oanda.faults import Fault as OandaFault
from ult_actors.sim.oanda.server import OandaSimulator

_KEY, _SECRET, _TOKEN = "bench-key", "bench-secret", "bench-token"


async def _ignore(_update: OrderUpdate) -> None:
    pass


async def _time_to_loss(
    silence: Callable[[], None], lost: trio.Event, stale_s: float, settle_s: float
) -> float:
    """Let the stream settle, ``silence`` the venue, and time until ``lost`` is set."""
    await trio.sleep(settle_s)
    silenced = trio.current_time()
    silence()
    with trio.fail_after(10 * stale_s):
        await lost.wait()
    return trio.current_time() - silenced


async def oanda_sample(stale_s: float, settle_s: float) -> float:
    """Seconds from silencing OANDA's transaction stream to ``stream_updates`` giving it up."""
    # Heartbeats as often as OANDA's (every 5 s for 15 s) in proportion.
    sim = OandaSimulator(token=_TOKEN, seed=1, heartbeat_s=stale_s / 3, tick_s=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        settings = OandaSettings(
            token=Secret(_TOKEN),
            account_id=sim.account_id,
            base_url=sim.base_url,
            stale_after_s=stale_s,
        )
        connector = OandaConnector("oanda", settings)
        await connector.connect()
        try:
            lost = trio.Event()

            async def stream() -> None:
                try:
                    await connector.stream_updates(_ignore)
                except BrokerUnavailable:
                    lost.set()

            nursery.start_soon(stream)
            # Heartbeats flow while it settles.
            return await _time_to_loss(
                lambda: sim.arm(OandaFault(kind="silent")), lost, stale_s, settle_s
            )
        finally:
            await connector.disconnect()
            nursery.cancel_scope.cancel()


async def alpaca_sample(stale_s: float, settle_s: float) -> float:
    """Seconds from silencing Alpaca's ``trade_updates`` to the connector reporting it lost."""
    sim = make_alpaca_sim(key=_KEY, secret=_SECRET, seed=1)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_alpaca_sim, sim))
        settings = AlpacaSettings(
            api_key=Secret(_KEY),
            api_secret=Secret(_SECRET),
            base_url=f"http://127.0.0.1:{port}",
            stale_after_s=stale_s,
            # Pinged as the default does (10 s for 30 s), in proportion.
            stream_ping_interval_s=stale_s / 3,
        )
        connector = AlpacaConnector("alpaca", settings, rng=random.Random(1))
        lost = trio.Event()
        connector.watch_stream(lambda why: lost.set() if why is not None else None)
        await connector.connect()
        try:
            await nursery.start(connector.stream_updates, _ignore)
            return await _time_to_loss(
                lambda: sim.arm(AlpacaFault(kind="silent")), lost, stale_s, settle_s
            )
        finally:
            await connector.disconnect()
            nursery.cancel_scope.cancel()


async def ib_sample(stale_s: float, settle_s: float) -> float:
    """Seconds from TWS going silent to the IB connector's ``stream_updates`` giving it up.

    TWS sends nothing while nothing happens: the connector asks ``reqCurrentTime``
    after ``stale_after_s`` of silence and waits ``probe_timeout_s`` (here S / 6,
    as the defaults 5 s for 30 s) for the answer.
    """
    sim = TwsSimulator(tick_interval_s=None)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        settings = IbSettings(port=port, stale_after_s=stale_s, probe_timeout_s=stale_s / 6)
        connector = IbConnector("ib", settings)
        await connector.connect()
        try:
            lost = trio.Event()

            async def stream() -> None:
                try:
                    await connector.stream_updates(_ignore)
                except BrokerUnavailable:
                    lost.set()

            nursery.start_soon(stream)

            def silence() -> None:
                sim.faults.silent = True

            # Probes are answered while it settles.
            return await _time_to_loss(silence, lost, stale_s, settle_s)
        finally:
            await connector.disconnect()
            nursery.cancel_scope.cancel()


VENUES: dict[str, Callable[[float, float], Awaitable[float]]] = {
    "alpaca": alpaca_sample,
    "oanda": oanda_sample,
    "ib": ib_sample,
}


async def measure(
    venues: list[str], stales: list[float], samples: int, seed: int
) -> dict[tuple[str, float], list[float]]:
    """Detection times per (venue, stale_after_s); the silence starts at a seeded moment."""
    rng = random.Random(seed)
    out: dict[tuple[str, float], list[float]] = {}
    for venue in venues:
        for stale in stales:
            out[venue, stale] = [
                await VENUES[venue](stale, rng.uniform(0.5, 1.5) * stale) for _ in range(samples)
            ]
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure, print one line per venue and ``stale_after_s``; exit 1 past the 2x goal."""
    p = argparse.ArgumentParser(
        prog="python -m bench.silent_stream", description=__doc__.split("\n")[0]
    )
    p.add_argument("--venues", nargs="+", default=list(VENUES), choices=list(VENUES))
    p.add_argument("--stale", nargs="+", type=float, default=[1.0, 2.0], help="stale_after_s values")
    p.add_argument("--samples", type=int, default=5, help="silences per venue and value")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    # The connectors log each loss as a warning: expected here, so only errors are shown.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    results = trio.run(measure, args.venues, args.stale, args.samples, args.seed)
    worst_ratio = 0.0
    for (venue, stale), times in results.items():
        ratio = max(times) / stale
        worst_ratio = max(worst_ratio, ratio)
        print(
            f"{venue:<7} stale_after_s {stale:g}: found after p50 {statistics.median(times):.2f} s"
            f"  max {max(times):.2f} s  ({ratio:.2f}x stale_after_s, {len(times)} silences)"
        )
    return 0 if worst_ratio <= 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
