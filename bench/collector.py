#!/usr/bin/env python3
"""The cyclic garbage collector's share of an order: CPython's defaults against ``ult serve``'s.

Drives the in-process service of ``bench.instructions`` (the default
configuration's durable files) with ``--orders`` orders after a warm-up, in a
fresh process per run, and times every collection with ``gc.callbacks`` (the
collecting thread's CPU). ``defaults``: CPython's settings (700, 10, 10);
``settled``: ``ult_actors.collector.settle_after_start`` once the warm-up is
done, as ``ult serve`` calls it once ready. Runs take turns over
``--rounds``; per variant, the medians of the collections' CPU per order and
of the process's CPU per order, and the collections by generation.

    python -m bench.collector --orders 20000 --rounds 3 [--mode window|seq]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import trio

from bench.common import ROOT, child_env
from bench.instructions import drive

VARIANTS = ("defaults", "settled")


class _Watch:
    """Duck-types ``drive``'s probe: settles the collector (``settled``) and starts the
    clocks when the measured orders begin, stops them when they end."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self._on = False
        self.gc_cpu = 0.0
        self.collections = [0, 0, 0]
        self._began = 0.0
        self.cpu = 0.0

    @property
    def on(self) -> bool:
        return self._on

    @on.setter
    def on(self, value: bool) -> None:
        if value and self.variant == "settled":
            from ult_actors.collector import settle_after_start

            settle_after_start()  # its own full collection is start-up's, not the orders'
        self._on = value
        if value:
            self.cpu = time.process_time()
        else:
            self.cpu = time.process_time() - self.cpu

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if not self._on:
            return
        if phase == "start":
            self._began = time.thread_time()
        else:
            self.gc_cpu += time.thread_time() - self._began
            self.collections[info["generation"]] += 1


def run_one(variant: str, mode: str, orders: int, warmup: int) -> dict[str, Any]:
    """One driven run in this process (a fresh one: the collector's settings are the process's)."""
    watch = _Watch(variant)
    gc.callbacks.append(watch.callback)
    trio.run(drive, mode, warmup, orders, "durable", watch)
    return {
        "gc_us": watch.gc_cpu / orders * 1e6,
        "cpu_us": watch.cpu / orders * 1e6,
        "collections": watch.collections,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=20000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mode", choices=("window", "seq"), default="window")
    p.add_argument("--drive", choices=VARIANTS, help="one run in this process; prints JSON")
    args = p.parse_args(argv)
    if args.drive:
        print(json.dumps(run_one(args.drive, args.mode, args.orders, args.warmup)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, "-m", "bench.collector", "--drive", variant, "--mode", args.mode,
                 "--orders", str(args.orders), "--warmup", str(args.warmup)],
                capture_output=True, text=True, cwd=ROOT, env=child_env(), check=True,
                timeout=1800,
            )  # fmt: skip
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"the collector's share of an order ({args.mode}, {args.orders} orders, "
          f"{args.rounds} rounds; medians)")  # fmt: skip
    print(f"  {'variant':10} {'gc CPU/order':>13} {'process CPU/order':>18}  collections (gen 0/1/2)")
    for variant, results in runs.items():
        gc_us = statistics.median(r["gc_us"] for r in results)
        cpu_us = statistics.median(r["cpu_us"] for r in results)
        gens = "/".join(str(statistics.median(r["collections"][g] for r in results)) for g in range(3))
        print(f"  {variant:10} {gc_us:10.2f} us {cpu_us:15.1f} us  {gens}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
