"""rate_budget: how long a cancel waits for a token while new orders saturate the budget.

One account budget (``RateBudget``) on the real clock, kept saturated by a
backlog of new orders (each asks for a token again as soon as it got one);
meanwhile cancels arrive at random moments. Each cancel's wait, from asking to
holding its token, is reported as p50/max against one token interval
(1/rate): the issue's goal is a cancel sent within one interval. It measures
the budget's priority rule alone, without a venue or a socket. Cancels come
a random gap of 0 to twice ``--cancel-every`` intervals after the last one
went: by default about the budget's own rate, a storm. The budget keeps
``cancel_reserve`` tokens for them, so a cancel goes without waiting for a
token unless the ones before it spent the reserve; ``--cancel-reserve 0``
shows the budget without it.

    python -m bench.rate_budget --rate 50 --burst 5 --cancels 200
    python -m bench.rate_budget --venue alpaca --cancels 30   # a venue's default budget
"""

from __future__ import annotations

import argparse
import random
import statistics

import trio

from ult_actors.brokers.budget import DEFAULT_BUDGETS, RateBudget


async def measure(
    rate: float,
    burst: int,
    cancels: int,
    backlog: int,
    seed: int,
    cancel_reserve: int | None,
    cancel_every: float,
) -> list[float]:
    """Seconds each cancel waited for its token while ``backlog`` orders kept asking."""
    budget = RateBudget("bench", rate_per_s=rate, burst=burst, cancel_reserve=cancel_reserve)
    rng = random.Random(seed)
    waits: list[float] = []

    async def order_forever() -> None:
        while True:
            await budget.acquire("order")

    async with trio.open_nursery() as nursery:
        for _ in range(backlog):
            nursery.start_soon(order_forever)
        await trio.sleep(2 * burst / rate)  # the bucket is empty, the backlog waiting
        for _ in range(cancels):
            await trio.sleep(rng.uniform(0.0, 2.0 * cancel_every / rate))
            asked = trio.current_time()
            await budget.acquire("cancel")
            waits.append(trio.current_time() - asked)
        nursery.cancel_scope.cancel()
    return waits


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
    args = p.parse_args(argv)
    if args.venue:
        args.rate, args.burst = DEFAULT_BUDGETS[args.venue]
    waits = trio.run(
        measure,
        args.rate,
        args.burst,
        args.cancels,
        args.backlog,
        args.seed,
        args.cancel_reserve,
        args.cancel_every,
    )
    interval_ms = 1000 / args.rate
    p50 = statistics.median(waits) * 1000
    worst = max(waits) * 1000
    # Served on arrival (no timer between asking and the token): well under an interval.
    at_once = sum(1 for w in waits if w * 1000 < interval_ms / 20)
    reserve = RateBudget(
        "bench", rate_per_s=args.rate, burst=args.burst, cancel_reserve=args.cancel_reserve
    ).cancel_reserve
    print(
        f"rate {args.rate:g}/s burst {args.burst} cancel reserve {reserve},"
        f" {args.backlog} orders waiting, {len(waits)} cancels every ~{args.cancel_every:g}"
        f" intervals ({at_once} without waiting for a token)"
    )
    print(
        f"cancel wait for a token: p50 {p50:.2f} ms  max {worst:.2f} ms  (one interval {interval_ms:.2f} ms)"
    )
    return 0 if worst <= interval_ms * 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
