#!/usr/bin/env python3
"""Instructions per order on the durable actor path, counted by valgrind: steady on a busy machine.

Wall time and even CPU time move by tens of percent with other people's
load on a shared machine; instructions retired do not (two runs of the same
tree agree within 0.1 %). This drives the service in process, with what the
default configuration makes durable (the SQLite journal file, the paper
account file, their writer threads), through ``ServiceGateway.handle`` as
the IPC server calls it: ``--warmup`` sequential orders, then either more
sequential ones or a window of 128 concurrent submitters. Each measurement
is two runs under ``valgrind --tool=cachegrind`` (all threads counted), one
with ``--orders`` more orders than the other: the difference over
``--orders`` is the instructions per order, start-up and shut-down cancelled
out. The socket and the log line of the IPC layer are not in it.

    python -m bench.instructions --orders 1000          # sequential and window 128
    python -m bench.instructions --setup instant         # the actor machinery alone
    python -m bench.instructions --setup alpaca          # to ``ult sim alpaca`` (its own process)
    python -m bench.instructions --drive seq 100 1100    # one run, no valgrind (what it runs)
    python -m bench.instructions --steps --setup instant # scheduler rounds and task steps
    python -m bench.instructions --threads --orders 5000 # CPU per order, by thread

``--steps`` needs no valgrind: it counts, with a ``trio.abc.Instrument``, the
scheduler rounds and the task steps per order (by task) of the measured
orders, sequential and windowed: what an order costs in wake-ups.
``--threads`` needs none either: the CPU time per order of each of the
process's threads (``/proc/self/task``), the trio thread apart from the
journal's and the paper venue's threads: what is left on the loop.

A/B of two trees: run it in each checkout (``cd <tree> && PYTHONPATH=.
python -m bench.instructions``); the figures are comparable across runs.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import trio

from bench.common import ROOT, child_env, short_tempdir
from bench.peer import KEY, SECRET, UNPACED_ORDERS, running_sim
from bench.ult import RISK_LIMITS

WINDOW = 128
#: What is behind the actors: ``durable`` is the default configuration's (the
#: SQLite journal file, the paper account file); ``memory`` keeps both in memory;
#: ``instant`` has a memory journal and a broker that fills at once, keeping nothing;
#: ``paperfile`` has a memory journal and the paper account file (``paperfile`` less
#: ``memory`` is what the paper account's file costs an order);
#: ``alpaca`` is the default's journal file and an Alpaca connection to ``ult sim
#: alpaca`` in a process of its own (not counted), as the peer section runs it:
#: the orders go there, each with its REST request and two ``trade_updates``.
SETUPS = ("durable", "memory", "instant", "paperfile", "alpaca")


def _config_text(state_dir: Path, setup: str, alpaca_url: str = "") -> str:
    risk = "\n".join(f"{k} = {v}" for k, v in RISK_LIMITS.items())
    paper = 'state_path = ":memory:"\n' if setup in ("memory", "instant") else ""
    alpaca = (
        f'\n[brokers.alpaca]\nkind = "alpaca"\nbase_url = "{alpaca_url}"\n'
        f"request_burst = {UNPACED_ORDERS}\n"
        if alpaca_url
        else ""
    )
    return (
        f'[service]\nstate_dir = "{state_dir}"\n\n[risk]\n{risk}\n\n'
        '[brokers.paper]\nkind = "paper"\nlatency_ms = 0\nstarting_cash = 1000000000000\n'
        + paper
        + alpaca
    )


class StepCounter(trio.abc.Instrument):
    """Scheduler rounds and task steps (by task name) while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.rounds = 0
        self.steps: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.on:
            self.steps[task.name] += 1

    def after_io_wait(self, timeout: float) -> None:
        self.rounds += self.on


async def drive(
    mode: str,
    warmup: int,
    orders: int,
    setup: str = "durable",
    steps: StepCounter | ThreadClock | None = None,
) -> int:
    """Run the in-process service and submit ``warmup`` + ``orders`` orders; how many were answered.

    ``steps``, if given, counts the rounds and task steps of the ``orders`` after the warm-up.
    """
    if setup == "alpaca":
        async with running_sim(fill_delay_s=0.05, fill_slices=1) as url:
            return await _drive(mode, warmup, orders, setup, steps, url)
    return await _drive(mode, warmup, orders, setup, steps)


async def _drive(
    mode: str,
    warmup: int,
    orders: int,
    setup: str,
    steps: StepCounter | ThreadClock | None,
    alpaca_url: str = "",
) -> int:
    from bench.actors import InstantConnector
    from ult_actors.config import load_config
    from ult_actors.journal import memory_store_opener
    from ult_actors.messages import OrderReply, OrderRequest, Submit
    from ult_actors.service import build_service

    answered = 0
    broker = "alpaca" if alpaca_url else "paper"
    env = {"ALPACA_API_KEY": KEY, "ALPACA_API_SECRET": SECRET} if alpaca_url else {}
    with short_tempdir("bn-") as tmp:
        path = tmp / "ult.toml"
        path.write_text(_config_text(tmp, setup, alpaca_url))
        extra: dict[str, Any] = {}
        if setup in ("memory", "instant", "paperfile"):
            extra["store_opener"] = memory_store_opener()
        if setup == "instant":
            extra["connector_factories"] = {"paper": lambda: InstantConnector("paper")}
        service = build_service(load_config(path, env=env), env=env, rng=random.Random(7), **extra)
        ids = iter(range(1, 10**9))

        async def one() -> None:
            nonlocal answered
            i = next(ids)
            request = OrderRequest(
                symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"n-{i}", broker=broker
            )
            reply = await service.gateway.handle(Submit(id=i, order=request))
            assert isinstance(reply, OrderReply), reply
            answered += 1

        async with trio.open_nursery() as nursery:
            with trio.fail_after(600):
                await nursery.start(service.run)
                for _ in range(warmup):
                    await one()
                if steps is not None:
                    trio.lowlevel.add_instrument(steps)
                    steps.on = True
                if mode == "seq":
                    for _ in range(orders):
                        await one()
                        # A client's next request comes through the socket: the loop runs
                        # between two orders (the venue's update stream among others).
                        await trio.lowlevel.checkpoint()
                else:
                    left = orders

                    async def worker() -> None:
                        nonlocal left
                        while left > 0:
                            left -= 1
                            await one()

                    async with trio.open_nursery() as workers:
                        for _ in range(WINDOW):
                            workers.start_soon(worker)
                if steps is not None:
                    steps.on = False
                    trio.lowlevel.remove_instrument(steps)
            nursery.cancel_scope.cancel()
    return answered


def _instructions(mode: str, warmup: int, orders: int, setup: str) -> int:
    """Instructions of one driven run under cachegrind (every thread of the process)."""
    return instructions_of([
        "-m", "bench.instructions", "--setup", setup, "--drive", mode, str(warmup), str(orders),
    ])  # fmt: skip


def instructions_of(python_args: list[str]) -> int:
    """Instructions of ``python python_args`` under cachegrind (every thread of the process)."""
    command = [
        "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        sys.executable, *python_args,
    ]  # fmt: skip
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=1800, cwd=ROOT, env=child_env(),
        check=True,
    )  # fmt: skip
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def measure(orders: int, warmup: int, setup: str = "durable") -> dict[str, Any]:
    """Instructions per order, sequential and with a window of 128."""
    if shutil.which("valgrind") is None:
        return {"status": "unavailable: valgrind is not installed"}
    base = _instructions("seq", warmup, 0, setup)
    result: dict[str, Any] = {"setup": setup, "orders": orders, "warmup": warmup}
    for mode in ("seq", "window"):
        total = _instructions(mode, warmup, orders, setup)
        result[mode] = round((total - base) / orders)
    return result


class ThreadClock(trio.abc.Instrument):
    """CPU seconds of each thread of this process (``/proc/self/task``) when switched on and off.

    Duck-types the ``steps`` argument of ``drive`` (an instrument with ``on``).
    """

    def __init__(self) -> None:
        self._on = False
        self.start: dict[tuple[str, str], float] = {}
        self.end: dict[tuple[str, str], float] = {}
        self.names: dict[str, str] = {}

    @property
    def on(self) -> bool:
        """Whether the measured orders are running."""
        return self._on

    @on.setter
    def on(self, value: bool) -> None:
        self._on = value
        if value:
            self.start = _thread_cpu()
        else:
            self.end = _thread_cpu()
            # Named now: the service's threads end with it.
            self.names = {str(thread.native_id): thread.name for thread in threading.enumerate()}

    def per_thread(self) -> dict[str, float]:
        """CPU seconds by thread name (the trio thread is ``trio``) between on and off."""
        main = str(os.getpid())
        names = self.names
        spent: dict[str, float] = {}
        for key, seconds in self.end.items():
            name = "trio" if key[0] == main else names.get(key[0], key[1]).split(":")[0]
            spent[name] = spent.get(name, 0.0) + seconds - self.start.get(key, 0.0)
        return spent


def _thread_cpu() -> dict[tuple[str, str], float]:
    """(thread id, name) -> user + system CPU seconds so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


Probe = TypeVar("Probe", StepCounter, ThreadClock)


def _each_mode(
    make: Callable[[], Probe], orders: int, warmup: int, setup: str
) -> Iterator[tuple[str, Probe]]:
    """Drive the service sequentially, then with a window of 128, each run watched by a
    new ``make()`` probe; (mode, that probe) after each run."""
    for mode in ("seq", "window"):
        probe = make()
        trio.run(drive, mode, warmup, orders, setup, probe)
        yield mode, probe


def thread_cpu(orders: int, warmup: int, setup: str) -> dict[str, Any]:
    """CPU microseconds per order by thread, sequential and with a window of 128."""
    result: dict[str, Any] = {"setup": setup, "orders": orders, "warmup": warmup}
    for mode, clock in _each_mode(ThreadClock, orders, warmup, setup):
        spent = clock.per_thread()
        result[mode] = {
            "total": round(sum(spent.values()) / orders * 1e6, 1),
            "by_thread": {
                name: round(seconds / orders * 1e6, 1)
                for name, seconds in sorted(spent.items(), key=lambda item: -item[1])
                if seconds > 0
            },
        }
    return result


def count_steps(orders: int, warmup: int, setup: str) -> dict[str, Any]:
    """Scheduler rounds and task steps per order, sequential and with a window of 128."""
    result: dict[str, Any] = {"setup": setup, "orders": orders, "warmup": warmup}
    for mode, counter in _each_mode(StepCounter, orders, warmup, setup):
        result[mode] = {
            "rounds": round(counter.rounds / orders, 2),
            "steps": round(sum(counter.steps.values()) / orders, 2),
            "by_task": {
                name: round(count / orders, 2)
                for name, count in counter.steps.most_common()
                if count >= orders / 100
            },
        }
    return result


def _print_steps(result: dict[str, Any]) -> None:
    print(f"per order, {result['setup']} ({result['orders']} orders after {result['warmup']})")
    for mode, label in (("seq", "sequential"), ("window", f"window {WINDOW}")):
        row = result[mode]
        print(f"  {label}: {row['rounds']} scheduler rounds, {row['steps']} task steps")
        for name, count in row["by_task"].items():
            print(f"    {count:6.2f}  {name}")


def _print_threads(result: dict[str, Any]) -> None:
    print(f"CPU per order by thread, {result['setup']} ({result['orders']} orders after"
          f" {result['warmup']})")  # fmt: skip
    for mode, label in (("seq", "sequential"), ("window", f"window {WINDOW}")):
        row = result[mode]
        threads = ", ".join(f"{name} {us:.0f} us" for name, us in row["by_thread"].items())
        print(f"  {label}: {row['total']:.0f} us ({threads})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=1000, help="orders per measured run (1000)")
    p.add_argument("--warmup", type=int, default=100, help="sequential orders first (100)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--setup", choices=SETUPS, default="durable", help="see SETUPS (durable)")
    p.add_argument(
        "--drive", nargs=3, metavar=("MODE", "WARMUP", "ORDERS"),
        help="run once without valgrind (seq or window); what each measurement runs",
    )  # fmt: skip
    p.add_argument(
        "--steps", action="store_true", help="count rounds and task steps instead (no valgrind)"
    )
    p.add_argument(
        "--threads", action="store_true", help="CPU per order by thread instead (no valgrind)"
    )
    args = p.parse_args(argv)
    if args.threads:
        result = thread_cpu(args.orders, args.warmup, args.setup)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            _print_threads(result)
        return 0
    if args.steps:
        result = count_steps(args.orders, args.warmup, args.setup)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            _print_steps(result)
        return 0
    if args.drive:
        mode, warmup, orders = args.drive
        if mode not in ("seq", "window"):
            p.error("MODE is seq or window")
        print(trio.run(drive, mode, int(warmup), int(orders), args.setup), "orders answered")
        return 0
    result = measure(args.orders, args.warmup, args.setup)
    if args.json:
        print(json.dumps(result, indent=2))
    elif "status" in result:
        print(result["status"])
    else:
        print(
            f"instructions per order, {args.setup} ({args.orders} orders after {args.warmup},"
            " valgrind)"
        )
        print(f"  sequential      {result['seq']:>12,}")
        print(f"  window {WINDOW}      {result['window']:>12,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
