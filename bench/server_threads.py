"""The server's CPU per order split by thread, through the real socket.

``scripts/bench`` reports one figure for the server's CPU per pipelined order;
this says which of ``ult serve``'s threads spends it (the trio loop, the
journal's fold, the paper file's writer, the log writer, the log's fsync) and
how long each waited for a core, from the kernel's per-thread scheduler
accounting (``/proc/PID/task/*/schedstat``: nanoseconds, not clock ticks), and
how that CPU splits into user and system time (``/proc/PID/task/*/stat``, in clock
ticks: meaningful over thousands of orders, not a few).

    python -m bench.server_threads                       # default config, window 128
    python -m bench.server_threads --orders 20000 --rounds 3
    python -m bench.server_threads --memory              # journal and paper file off

The service is the bench's own (``bench.ult``): a warm-up of sequential
orders, then ``--orders`` pipelined orders through one client, measured.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import trio

from bench.common import Budget, short_tempdir
from bench.ult import VARIANTS, pipelined, sequential, start_service, write_config

#: Microseconds per clock tick of ``/proc/*/stat``'s user and system times.
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")

#: Thread name (its part before ``:``: the journal's threads name their file after it) ->
#: (ns on a core, ns waiting for one, times scheduled, user ticks, system ticks).
SchedStat = dict[str, tuple[int, int, int, int, int]]


def thread_schedstat(pid: int) -> SchedStat:
    """Thread name -> its ``SchedStat`` figures, summed by name."""
    out: SchedStat = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            ran, waited, slices = map(
                int, Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
            )
        except OSError:  # the thread ended meanwhile
            continue
        key = "trio" if tid == str(pid) else name.split(":")[0]
        try:  # after the name in parentheses, utime and stime are the 12th and 13th fields
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            ut, st = int(stat[11]), int(stat[12])
        except OSError:
            ut = st = 0
        r, w, s, u0, s0 = out.get(key, (0, 0, 0, 0, 0))
        out[key] = (r + ran, w + waited, s + slices, u0 + ut, s0 + st)
    return out


async def measure(orders: int, memory: bool, one_at_a_time: bool = False) -> dict[str, Any]:
    """One service: warm up, then ``orders`` pipelined orders (or sequential ones, with
    ``one_at_a_time``); per-order figures by thread."""
    overrides = VARIANTS["journal off, paper account in memory"] if memory else None
    with short_tempdir("bt-") as tmp:
        (tmp / "run").mkdir(mode=0o700)
        service = await start_service(tmp, write_config(tmp, overrides))
        try:
            await sequential(service.socket, Budget(300, 10.0))
            before = thread_schedstat(service.pid)
            budget = Budget(orders, 120.0)
            if one_at_a_time:
                result = await sequential(service.socket, budget, server_pid=service.pid)
            else:
                result = await pipelined(
                    service.socket, budget, clients=1, window=128, server_pid=service.pid
                )
            after = thread_schedstat(service.pid)
        finally:
            await service.stop()
    n = result["n"]
    threads = {}
    for name, now in after.items():
        ran, waited, slices, user, system = (
            a - b for a, b in zip(now, before.get(name, (0,) * 5), strict=True)
        )
        threads[name] = {
            "cpu_us": round(ran / n / 1e3, 1),
            "wait_us": round(waited / n / 1e3, 1),
            "slices": round(slices / n, 3),
            "user_us": round(user * TICK_US / n, 1),
            "sys_us": round(system * TICK_US / n, 1),
        }
    return {
        "mode": "sequential" if one_at_a_time else "pipelined",
        "p50_us": result["p50_us"],
        "orders": n,
        "per_s": result["per_s"],
        "server_cpu_us": result["server_cpu_us"],
        "threads": {k: v for k, v in sorted(threads.items(), key=lambda kv: -kv[1]["cpu_us"])},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--memory", action="store_true", help="journal in memory, paper file off")
    p.add_argument("--sequential", action="store_true", help="one order at a time")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    for _ in range(args.rounds):
        result = trio.run(measure, args.orders, args.memory, args.sequential)
        if args.json:
            print(json.dumps(result))
            continue
        print(
            f"{result['orders']} {result['mode']} orders, {result['per_s']:.0f}/s,"
            f" p50 {result['p50_us']} us, server CPU"
            f" {result['server_cpu_us']} us an order; by thread (us an order):"
        )
        for name, t in result["threads"].items():
            if t["cpu_us"] >= 0.1:
                print(
                    f"  {name:14} cpu {t['cpu_us']:7.1f}  waiting for a core"
                    f" {t['wait_us']:7.1f}  scheduled {t['slices']:.3f}x"
                    f"  (user {t['user_us']:.0f}, system {t['sys_us']:.0f})"
                )


if __name__ == "__main__":
    main()
