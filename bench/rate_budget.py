"""rate_budget: how long a cancel waits for a token while new orders saturate the budget.

One account budget (``RateBudget``) on the real clock, kept saturated by a
backlog of new orders (each asks for a token again as soon as it got one);
meanwhile cancels arrive at random moments. Each cancel's wait, from asking to
holding its token, is reported as p50/max against one token interval
(1/rate): the issue's goal is a cancel sent within one interval. The wait is
split in two: the wait for a token the budget planned when the cancel asked
(``RateBudget.eta_s``: 0 when a token was there) and the rest, which is the
event loop's delay in waking the cancel (a timer firing late on a loaded
host), not the budget's. It measures
the budget's priority rule alone, without a venue or a socket. Cancels come
a random gap of 0 to twice ``--cancel-every`` intervals after the last one
went: by default about the budget's own rate, a storm. The budget keeps
``cancel_reserve`` tokens for them, so a cancel goes without waiting for a
token unless the ones before it spent the reserve; ``--cancel-reserve 0``
shows the budget without it.

``--tws`` measures the whole way at IB instead: the IB connector on the TWS
simulator over loopback, the backlog submitting resting orders without
pause, each cancel one of them (charged as the broker actor charges them),
timed from asking for its token to TWS's answer, through the connection's
own pacer; TWS's error-100 cut-offs are counted.

    python -m bench.rate_budget --rate 50 --burst 5 --cancels 200
    python -m bench.rate_budget --venue alpaca --cancels 30   # a venue's default budget
    python -m bench.rate_budget --venue ib --tws --backlog 100 --cancels 100 --cancel-every 3
"""

from __future__ import annotations

import argparse
import itertools
import logging
import random
import statistics
from collections.abc import Awaitable, Callable
from decimal import Decimal

import structlog
import trio

from ult_actors.brokers.budget import DEFAULT_BUDGETS, RateBudget, charged_as
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.settings import IbSettings
from ult_actors.messages import Order, OrderRequest, OrderUpdate
from ult_actors.sim.ib import TwsSimulator

Send = Callable[[], Awaitable[object]]


class Waits:
    """Per cancel: seconds from asking to done, and the token wait the budget planned."""

    def __init__(self) -> None:
        self.total: list[float] = []
        self.for_token: list[float] = []


async def measure(order: Send, cancel: Send, budget: RateBudget, args: argparse.Namespace) -> Waits:
    """How long each ``cancel()`` took while ``args.backlog`` tasks called ``order()`` without
    pause, after a warm-up of two bursts' worth of tokens.

    Cancels come a random 0 to ``2 * args.cancel_every`` token intervals after the
    previous one ended.
    """
    cancels, backlog, seed = args.cancels, args.backlog, args.seed
    warmup_s = 2 * budget.burst / budget.rate_per_s
    gap_s = args.cancel_every / budget.rate_per_s
    rng = random.Random(seed)
    waits = Waits()

    async def order_forever() -> None:
        while True:
            await order()

    async with trio.open_nursery() as nursery:
        for _ in range(backlog):
            nursery.start_soon(order_forever)
        await trio.sleep(warmup_s)  # the bucket is empty, the backlog waiting
        for _ in range(cancels):
            await trio.sleep(rng.uniform(0.0, 2.0 * gap_s))
            # No checkpoint between planning and asking: the budget cannot change.
            waits.for_token.append(budget.eta_s("cancel"))
            asked = trio.current_time()
            await cancel()
            waits.total.append(trio.current_time() - asked)
        nursery.cancel_scope.cancel()
    return waits


async def at_the_budget(budget: RateBudget, args: argparse.Namespace) -> tuple[Waits, int]:
    """Cancels' waits for a token of ``budget`` alone (no venue)."""
    waits = await measure(
        lambda: budget.acquire("order"), lambda: budget.acquire("cancel"), budget, args
    )
    return waits, 0


async def _ignore(_update: OrderUpdate) -> None:
    pass


async def at_tws(budget: RateBudget, args: argparse.Namespace) -> tuple[Waits, int]:
    """Cancels' times to TWS's answer at the TWS simulator, and TWS's error-100 cut-offs."""
    sim = TwsSimulator(tick_interval_s=None)
    async with trio.open_nursery() as outer:
        await outer.start(sim.serve)
        connector = IbConnector("bench", IbSettings(port=sim.port))
        connector.use_budget(budget)
        await connector.connect()
        await outer.start(connector.stream_updates, _ignore)
        below = sim.exchange.price("AAPL") - 5
        numbers = itertools.count()

        async def place() -> Order:
            request = OrderRequest(
                symbol="AAPL",
                side="buy",
                qty=Decimal(1),
                type="limit",
                limit_price=below,
                time_in_force="gtc",
                client_order_id=f"bench-{next(numbers)}",
            )
            with charged_as("order"):  # as the broker actor pays for a command
                await budget.prepay("order")
                return await connector.submit(request)

        resting = [await place() for _ in range(args.cancels)]

        async def cancel() -> None:
            with charged_as("cancel"):
                await budget.prepay("cancel")
                await connector.cancel(resting.pop().id)

        waits = await measure(place, cancel, budget, args)
        await connector.disconnect()
        outer.cancel_scope.cancel()
    return waits, sim.rate_violations


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print p50/max against the token interval."""
    p = argparse.ArgumentParser(
        prog="python -m bench.rate_budget", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rate", type=float, default=50.0, help="tokens per second (TWS: 50 msgs/s)")
    p.add_argument("--burst", type=int, default=5, help="tokens at once")
    p.add_argument("--cancels", type=int, default=200, help="cancels to measure")
    p.add_argument("--backlog", type=int, default=500, help="new orders kept waiting")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--cancel-every", type=float, default=1.0, help="mean gap between cancels, in intervals"
    )
    p.add_argument(
        "--cancel-reserve", type=int, help="tokens kept for cancels (default: the budget's own)"
    )
    p.add_argument(
        "--venue", choices=sorted(DEFAULT_BUDGETS), help="use this venue's default rate and burst"
    )
    p.add_argument(
        "--tws", action="store_true", help="through the IB connector at the TWS simulator"
    )
    args = p.parse_args(argv)
    if args.venue:
        args.rate, args.burst = DEFAULT_BUDGETS[args.venue]
    budget = RateBudget(
        "bench", rate_per_s=args.rate, burst=args.burst, cancel_reserve=args.cancel_reserve
    )
    waits, cut_off = trio.run(at_tws if args.tws else at_the_budget, budget, args)
    interval_ms = 1000 / args.rate
    total = [w * 1000 for w in waits.total]
    # Served on arrival (no timer between asking and the token): well under an interval.
    at_once = sum(1 for w in total if w < interval_ms / 20)
    print(
        f"rate {args.rate:g}/s burst {args.burst} cancel reserve {budget.cancel_reserve},"
        f" {args.backlog} orders waiting, {len(total)} cancels every ~{args.cancel_every:g}"
        f" intervals ({at_once} in under a twentieth of one)"
    )
    what = "cancel answered by TWS" if args.tws else "cancel wait for a token"
    print(
        f"{what}: p50 {statistics.median(total):.2f} ms  max {max(total):.2f} ms"
        f"  (one interval {interval_ms:.2f} ms)"
        + (f"; TWS error-100 cut-offs: {cut_off}" if args.tws else "")
    )
    planned = [(t * 1000, w * 1000) for t, w in zip(waits.for_token, waits.total, strict=True)]
    rounding = interval_ms / 1000  # a cancel with a token there plans 0, or a rounding's worth
    slept = [(t, w) for t, w in planned if t > rounding]
    found = [w for t, w in planned if t <= rounding]
    late = [w - t for t, w in slept]
    print(
        f"{len(found)} found a token (max {_max_ms(found)}); {len(slept)} found none: the"
        f" budget planned p50 {_median_ms([t for t, _ in slept])} max"
        f" {_max_ms([t for t, _ in slept])} for it, the loop woke them p50 {_median_ms(late)}"
        f" max {_max_ms(late)} later"
    )
    # The budget's promise is the planned wait; the loop's delay is the host's.
    worst_planned = max((t for t, _ in planned), default=0.0)
    return 0 if worst_planned <= interval_ms * (1 + 1e-6) and not cut_off else 1


def _median_ms(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ms" if values else "-"


def _max_ms(values: list[float]) -> str:
    return f"{max(values):.2f} ms" if values else "-"


if __name__ == "__main__":
    # Quiet, as a script only: the connector's info lines would bury the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    raise SystemExit(main())
