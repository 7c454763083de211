"""What the client library costs per request, against a server that costs next to nothing.

Starts a canned-reply server as its own process (``python -m bench.client_cost
--serve SOCKET``): it speaks the IPC framing and answers every request with
the same ``OrderReply`` (a filled market order, the shape the paper broker
sends back), carrying the request's id. So what moves between the variants is
the client alone. Each variant runs ``--requests`` submits in a round; the
rounds take turns (so load from other processes falls on every variant
alike), and the median over ``--rounds`` is printed per variant of:

- the client thread's CPU per request (``time.thread_time``): what the
  library costs whoever calls it, and what it takes from the service's cores
  in ``bench.ult``;
- the wall p50 of one request (sequential variants only).

Variants: ``bare``, the floor's client (``bench.floor``'s way: a ``Submit``
built and framed, ``send_all``, the reply read and decoded, on a trio
stream); ``async``, ``AsyncClient.submit`` one at a time; ``blocking``,
``Client.submit`` one at a time; ``bare pipelined`` and ``async pipelined``,
one connection with ``--window`` requests in flight.

    python -m bench.client_cost --requests 5000 --rounds 5

``--instructions`` counts instead, with valgrind, the instructions per
request of each sequential variant's client process (two runs each, with
and without the measured requests, against the same server): steady within
a few per cent on a busy machine, where the CPU figures move by tens. The
pipelined variants are left out there: how many replies one read brings,
and so the work per request, depends on timing that valgrind changes.

    python -m bench.client_cost --instructions --requests 500
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from functools import partial
from typing import Any

import trio

from bench import floor
from bench.common import (
    percentile,
    ready_child,
    reply_decoder,
    short_tempdir,
    split_frames,
    submit_frame,
)
from ult_actors.client import AsyncClient, Client
from ult_actors.messages import Order, OrderReply, Reply, Request

READ_SIZE = floor.READ_SIZE

#: What the server answers every request with (its id aside): a filled market buy.
ORDER = Order(
    id="5c0b7f1e-3d2a-4f6e-9b8c-1a2b3c4d5e6f",
    client_order_id="ult-0123456789ab-1",
    broker="paper",
    symbol="AAPL",
    side="buy",
    qty=Decimal(1),
    type="market",
    time_in_force="day",
    status="filled",
    filled_qty=Decimal(1),
    avg_fill_price=Decimal("187.25"),
    created_at=1_764_900_000_000_000_000,
    updated_at=1_764_900_000_000_100_000,
    arrival_price=Decimal("187.25"),
    arrival_source="venue_quote",
)


def _filled(request: Request, work_ns: int = 0) -> Reply:
    if work_ns:
        # Busy, as the service is while it handles an order: the client sleeps as
        # long as it would under ``ult serve`` and wakes to a core that did other work.
        until = time.perf_counter_ns() + work_ns
        while time.perf_counter_ns() < until:
            pass
    return OrderReply(id=request.id, order=ORDER)


async def serve(
    path: str, work_us: int = 0, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Answer every request on the Unix socket ``path`` with ``ORDER`` until killed,
    after ``work_us`` of busy CPU each."""
    answer = partial(_filled, work_ns=work_us * 1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(floor.serve, path, answer=answer))
        task_status.started()
        print("ready", flush=True)


# -- the client loops: each returns (thread CPU seconds, latency samples in ns) ---------

Loop = Callable[[str, int, int], Awaitable[tuple[float, list[int]]]]


async def bare(path: str, requests: int, window: int) -> tuple[float, list[int]]:
    """The floor's sequential client, building each request's frame as it goes."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    stream = await trio.open_unix_socket(path)
    buf = bytearray()
    async with stream:
        cpu = time.thread_time()
        for i in range(1, requests + 1):
            t0 = clock()
            await stream.send_all(submit_frame(i))
            while not (frames := split_frames(buf)):
                buf += await stream.receive_some(READ_SIZE)
            reply_decoder.decode(frames[0])
            samples.append(clock() - t0)
        return time.thread_time() - cpu, samples


async def async_client(path: str, requests: int, window: int) -> tuple[float, list[int]]:
    """``AsyncClient.submit``, one at a time."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    async with AsyncClient(path, timeout=30) as client:
        cpu = time.thread_time()
        for _ in range(requests):
            t0 = clock()
            await client.submit("AAPL", "buy", 1)
            samples.append(clock() - t0)
        return time.thread_time() - cpu, samples


async def blocking_client(path: str, requests: int, window: int) -> tuple[float, list[int]]:
    """``Client.submit``, one at a time (no event loop involved)."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    with Client(path, timeout=30) as client:
        cpu = time.thread_time()
        for _ in range(requests):
            t0 = clock()
            client.submit("AAPL", "buy", 1)
            samples.append(clock() - t0)
        return time.thread_time() - cpu, samples


async def bare_pipelined(path: str, requests: int, window: int) -> tuple[float, list[int]]:
    """The floor's pipelined client: one sender, one reader, ``window`` in flight."""
    stream = await trio.open_unix_socket(path)
    slots = trio.Semaphore(window)
    received = 0

    async def send() -> None:
        for i in range(1, requests + 1):
            await slots.acquire()
            await stream.send_all(submit_frame(i))

    async def receive() -> None:
        nonlocal received
        buf = bytearray()
        while received < requests:
            buf += await stream.receive_some(READ_SIZE)
            for payload in split_frames(buf):
                reply_decoder.decode(payload)
                received += 1
                slots.release()

    async with stream:
        cpu = time.thread_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(receive)
        return time.thread_time() - cpu, []


async def async_pipelined(path: str, requests: int, window: int) -> tuple[float, list[int]]:
    """``window`` tasks submitting in a loop on one ``AsyncClient``."""
    left = requests

    async def worker(client: AsyncClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await client.submit("AAPL", "buy", 1)

    async with AsyncClient(path, timeout=30) as client:
        cpu = time.thread_time()
        async with trio.open_nursery() as nursery:
            for _ in range(window):
                nursery.start_soon(worker, client)
        return time.thread_time() - cpu, []


VARIANTS: dict[str, Loop] = {
    "bare": bare,
    "async": async_client,
    "blocking": blocking_client,
    "bare pipelined": bare_pipelined,
    "async pipelined": async_pipelined,
}


async def measure(
    requests: int, rounds: int, window: int, only: list[str] | None = None, work_us: int = 0
) -> dict[str, dict[str, Any]]:
    """Start the server, run every variant ``rounds`` times taking turns; medians per variant."""
    chosen = {name: loop for name, loop in VARIANTS.items() if not only or name in only}
    cpu: dict[str, list[float]] = {name: [] for name in chosen}
    p50: dict[str, list[float]] = {name: [] for name in chosen}
    with short_tempdir("bc-") as tmp:
        path = str(tmp / "canned.sock")
        argv = ["-m", "bench.client_cost", "--serve", path, "--work-us", str(work_us)]
        async with ready_child(argv, "canned server"):
            for loop in chosen.values():  # warm up: imports, first connections
                await loop(path, min(200, requests), window)
            for _ in range(rounds):
                for name, loop in chosen.items():
                    seconds, samples = await loop(path, requests, window)
                    cpu[name].append(seconds / requests * 1e6)
                    if samples:
                        p50[name].append(percentile(sorted(samples), 0.5) / 1e3)
    return {
        name: {
            "client_cpu_us": round(statistics.median(cpu[name]), 1),
            "client_cpu_us_rounds": [round(c, 1) for c in cpu[name]],
            "p50_us": round(statistics.median(p50[name]), 1) if p50[name] else None,
        }
        for name in chosen
    }


#: The variants whose instructions per request ``--instructions`` counts.
SEQUENTIAL = ("bare", "async", "blocking")
WARMUP = 200


async def run_loop(path: str, name: str, requests: int, window: int) -> None:
    """One variant against the server at ``path``: a warm-up, then ``requests``."""
    await VARIANTS[name](path, WARMUP, window)
    if requests:
        await VARIANTS[name](path, requests, window)


async def count(requests: int, work_us: int, only: list[str] | None) -> dict[str, int]:
    """Instructions per request of each sequential variant's client process."""
    from bench.instructions import instructions_of

    counts: dict[str, int] = {}
    with short_tempdir("bc-") as tmp:
        path = str(tmp / "canned.sock")
        argv = ["-m", "bench.client_cost", "--serve", path, "--work-us", str(work_us)]
        async with ready_child(argv, "canned server"):
            for name in SEQUENTIAL:
                if only and name not in only:
                    continue
                loop = ["-m", "bench.client_cost", "--loop", name, "--socket", path, "--requests"]
                base = await trio.to_thread.run_sync(instructions_of, [*loop, "0"])
                total = await trio.to_thread.run_sync(instructions_of, [*loop, str(requests)])
                counts[name] = round((total - base) / requests)
    return counts


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", metavar="SOCKET", help="run the canned-reply server (internal)")
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--only", help="comma-separated variant names")
    p.add_argument(
        "--work-us",
        type=int,
        default=0,
        help="busy CPU the server spends per request before answering (0: none; ~400"
        " makes the client wait as long as under `ult serve`)",
    )
    p.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request with valgrind (sequential variants)",
    )
    p.add_argument("--loop", metavar="VARIANT", help="run one variant's loop (internal)")
    p.add_argument("--socket", help="the server's socket, for --loop (internal)")
    args = p.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(serve, args.serve, args.work_us)
        return 0
    if args.loop:
        trio.run(run_loop, args.socket, args.loop, args.requests, args.window)
        return 0
    only = args.only.split(",") if args.only else None
    if args.instructions:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed: no instruction counts", file=sys.stderr)
            return 1
        counts = trio.run(count, args.requests, args.work_us, only)
        print(f"{'variant':<18} {'instructions/request':>21}")
        for name, n in counts.items():
            print(f"{name:<18} {n:>21,}")
        return 0
    result = trio.run(measure, args.requests, args.rounds, args.window, only, args.work_us)
    print(f"{'variant':<18} {'client CPU/request':>19} {'p50':>10}   rounds (CPU us)")
    for name, row in result.items():
        p50 = f"{row['p50_us']:,.1f} us" if row["p50_us"] is not None else "-"
        rounds = ", ".join(f"{c:g}" for c in row["client_cpu_us_rounds"])
        print(f"{name:<18} {row['client_cpu_us']:>16.1f} us {p50:>10}   {rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
