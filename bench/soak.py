#!/usr/bin/env python3
"""Soak: does the service's memory stay flat under steady load with bad clients connected?

Starts ``ult serve`` (paper broker) as a subprocess on a socket in a temp
dir, then for ``--minutes`` (or ``--seconds``):

  * a trader submits ``--rate`` market orders per second (buys and sells in
    turn, so the paper position stays small), each answered;
  * a slow client keeps asking for order lists and reads its replies a
    little at a time (1 KiB every ``--slow-read-s``);
  * a silent subscriber subscribes to every event and never reads (the
    service closes it once it has read nothing for 5 s over its high-water
    mark; the count of such closings is printed at the end).

``--trader-only`` leaves the two bad clients out, to tell their cost from
the orders'.

Every ``--interval`` seconds it prints the service's RSS and open file
count (from /proc), orders answered and refused so far. At the end a verdict
line compares the last sample with the first one after ``--warmup`` (by
default, once the service's bounded per-order windows of 100,000 orders are
full: RSS grows until then by design):
``FLAT`` if RSS grew less than ``--tolerance`` percent and the open files
by at most 2, else ``GROWING``. Exit 0 if flat, 1 if growing, 2 if the run
could not be made (the service did not start, or died).

    scripts/soak --minutes 10          # python -m bench.soak from the repository root
    scripts/soak --seconds 8 --interval 2 --warmup 2   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import trio

from ult_actors.client import AsyncClient, UltError
from ult_actors.ipc.framing import ReplyCodec
from ult_actors.messages import ListOrders, Subscribe
from ult_actors.testing.process import UltProcess

#: The longest per-order memory the service keeps by design: the router's window of
#: recent requests and the books' applied fills (100,000 each), the journal's cache
#: (50,000). RSS grows until they are full (~500 s at 200 orders/s), then stays flat.
_WINDOW_ORDERS = 100_000


@dataclass
class Counts:
    """What the clients saw so far."""

    answered: int = 0
    refused: int = 0
    slow_bytes_read: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/soak",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="length of the run (default 10)")
    length.add_argument("--seconds", type=float, help="length of the run, for short runs")
    p.add_argument("--rate", type=float, default=200.0, help="orders per second (default 200)")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    p.add_argument(
        "--warmup", type=float, default=None, help="seconds before the reference sample"
        " (default: until the service's per-order windows are full, at most 85%% of the run)",
    )  # fmt: skip
    p.add_argument("--tolerance", type=float, default=10.0, help="RSS growth %% still flat")
    p.add_argument("--slow-read-s", type=float, default=1.0, help="the slow client's read pace")
    p.add_argument(
        "--trader-only", action="store_true",
        help="no slow client and no silent subscriber (to tell their cost from the orders')",
    )  # fmt: skip
    args = p.parse_args(argv)
    args.duration = args.seconds if args.seconds is not None else 60.0 * (args.minutes or 10.0)
    if args.warmup is None:
        args.warmup = min(0.85 * args.duration, _WINDOW_ORDERS / args.rate + 30.0)
    return args


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def trader(sock: Path, rate: float, counts: Counts) -> None:
    """Submit ``rate`` orders a second, each in its own task; count the answers."""
    period = 1.0 / rate
    async with AsyncClient(sock, timeout=30.0) as client, trio.open_nursery() as nursery:
        next_at = trio.current_time()
        n = 0
        while True:
            n += 1
            nursery.start_soon(one_order, client, "buy" if n % 2 else "sell", counts)
            next_at += period
            await trio.sleep_until(next_at)


async def one_order(client: AsyncClient, side: str, counts: Counts) -> None:
    try:
        await client.submit("AAPL", side, 1)  # type: ignore[arg-type]
        counts.answered += 1
    except UltError:
        counts.refused += 1


async def slow_client(sock: Path, read_every: float, counts: Counts) -> None:
    """Ask for order lists and read the answers 1 KiB at a time."""
    codec = ReplyCodec()
    stream = await trio.open_unix_socket(str(sock))
    async with stream, trio.open_nursery() as nursery:

        async def ask() -> None:
            for i in range(1, 1 << 30):
                await stream.send_all(codec.encode(ListOrders(id=i, limit=200)))
                await trio.sleep(read_every)

        nursery.start_soon(ask)
        while True:
            data = await stream.receive_some(1024)
            if not data:
                return
            counts.slow_bytes_read += len(data)
            await trio.sleep(read_every)


async def silent_subscriber(sock: Path) -> None:
    """Subscribe to everything, then never read."""
    stream = await trio.open_unix_socket(str(sock))
    async with stream:
        topics = ["orders", "fills", "health", "positions", "risk"]
        await stream.send_all(ReplyCodec().encode(Subscribe(id=1, topics=topics)))  # type: ignore[arg-type]
        await trio.sleep_forever()


async def sampler(pid: int, args: argparse.Namespace, counts: Counts, started: float) -> None:
    while True:
        await trio.sleep(args.interval)
        t = trio.current_time() - started
        rss, fds = rss_kib(pid), open_files(pid)
        counts.samples.append((t, rss, fds))
        print(
            f"t={t:6.0f}s rss={rss / 1024:7.1f} MiB open_files={fds:4d}"
            f" orders_answered={counts.answered} refused={counts.refused}"
            f" slow_client_read={counts.slow_bytes_read // 1024} KiB",
            flush=True,
        )


def closed_for_not_reading(log: Path) -> int:
    """How many connections the service closed for not reading (from its JSON log)."""
    if not log.exists():
        return 0
    return log.read_text(errors="replace").count("client not reading its replies")


def verdict(counts: Counts, args: argparse.Namespace) -> tuple[str, str]:
    """(FLAT|GROWING|UNKNOWN, the line that says why)."""
    after = [s for s in counts.samples if s[0] >= args.warmup]
    if len(after) < 2:
        return "UNKNOWN", "verdict: UNKNOWN (fewer than two samples after the warm-up)"
    (t0, rss0, fds0), (t1, rss1, fds1) = after[0], after[-1]
    growth = 100.0 * (rss1 - rss0) / rss0
    per_hour = (rss1 - rss0) / 1024 / max(t1 - t0, 1e-9) * 3600
    flat = growth < args.tolerance and fds1 - fds0 <= 2
    word = "FLAT" if flat else "GROWING"
    return word, (
        f"verdict: {word}: rss {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB ({growth:+.1f} %,"
        f" {per_hour:+.1f} MiB/hour) and open files {fds0} -> {fds1} between t={t0:.0f}s"
        f" and t={t1:.0f}s; {counts.answered} orders answered"
        f" ({counts.answered / args.duration:.0f}/s), {counts.refused} refused"
    )


async def soak(args: argparse.Namespace, base: Path) -> int:
    svc = UltProcess.serve(base, env={"PAPER_STARTING_CASH": "1000000000"}, notify=False)
    sock = svc.socket
    assert sock is not None and svc.proc is None
    try:
        try:
            await svc.astart(timeout=60)
        except RuntimeError:
            raise RuntimeError(
                f"the service did not become ready (exit code {svc.returncode})"
            ) from None
        assert svc.proc is not None
        pid = svc.proc.pid
        counts = Counts()
        started = trio.current_time()
        print(
            f"soak: pid {pid}, {args.duration:.0f} s at {args.rate:.0f} orders/s,"
            f" samples every {args.interval:.0f} s, warm-up {args.warmup:.0f} s",
            flush=True,
        )
        with trio.move_on_after(args.duration):
            async with trio.open_nursery() as nursery:
                if not args.trader_only:
                    nursery.start_soon(silent_subscriber, sock)
                    nursery.start_soon(slow_client, sock, args.slow_read_s, counts)
                nursery.start_soon(trader, sock, args.rate, counts)
                nursery.start_soon(sampler, pid, args, counts, started)
        if not svc.alive:
            print(f"soak: the service died (exit code {svc.returncode})", flush=True)
            return 2
        word, line = verdict(counts, args)
        print(line, flush=True)
        closed = closed_for_not_reading(svc.log_path)
        print(f"connections the service closed for not reading: {closed}", flush=True)
        return {"FLAT": 0, "GROWING": 1}.get(word, 2)
    finally:
        await svc.astop(timeout=30)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="ult-soak", dir="/tmp"))
    try:
        return trio.run(soak, args, base)
    except RuntimeError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        log = base / "service.log"
        if log.exists():
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
        return 2
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
