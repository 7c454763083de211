#!/usr/bin/env python3
"""A ``synchronous = "full"`` sequential order's time, by where its lone batch is fsynced.

Builds the service in process (``bench.instructions``' configuration plus
``[journal] synchronous = "full"``: the SQLite journal file, the paper
account file) and submits sequential orders through ``ServiceGateway.handle``,
switching every ``--block`` orders between the ways a lone journal batch can
be appended and fdatasynced: ``thread`` (always the journal writer's thread),
``loop`` (always the trio thread, when the loop has nothing else to run) and
``route`` (``journal.fsync_route``'s choice), ``asleep`` (the lone
submit's fdatasync begun through io_uring while the order goes on,
``journal.fsync_ahead``, the loop sleeping until it ends), ``ring`` (the
same, the trio thread watching for its end when nothing else is to run,
``idle_spin.IdleSpin``) and ``ahead`` (the service's way where
io_uring is offered: the lone submit fdatasynced on the trio thread before
it leaves while the route keeps lone writes there, ``SqliteStore._syncs_here``,
else as ``ring``). One
service and one disk for all, blocks interleaved, so a busy disk or a busy
machine weighs on every way alike. Per way: the order's p50 and p90, the
journal's fdatasync p50 (timed around the call, on whichever thread made
it; for ``asleep``, ``ring`` and ``ahead``, from the ring's start to its end seen), the
difference (what ``full`` costs an order beyond its fsync), and
the process's CPU per order (every thread, the fsyncs' kernel time too).

    python -m bench.full_sync --orders 3000
    python -m bench.full_sync --fake-fsync-us 135   # a sleep for the disk (no io_uring)

On a machine whose cores other processes keep busy the trio thread runs late
after an fsync it made itself (``journal/fsync_route.py``); running it under
``chrt -f 1`` shows what an idle machine's prompt wake-ups give. ``loop`` needs
the kernel's per-thread scheduler statistics (Linux): without them every
way is ``thread``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from bench.common import short_tempdir
from bench.instructions import _config_text
from ult_actors.idle_spin import IdleSpin
from ult_actors.journal.fsync_ahead import FsyncAhead, open_fsync_ahead
from ult_actors.journal.fsync_route import HAND_OVERS_NS, SLOW_WRITE_NS, FsyncRoute
from ult_actors.journal.sqlite import SqliteStore

WAYS = ("thread", "loop", "route", "asleep", "ring", "ahead")
#: The ways whose lone submit may have its fdatasync begun through io_uring.
_RING_WAYS = ("asleep", "ring", "ahead")


class TimedFsync:
    """Stands in for ``os.fdatasync``: times each call, under the way being measured."""

    def __init__(self, fake_us: float) -> None:
        self.fake_s = fake_us / 1e6
        self.way = ""
        self.times: dict[str, list[int]] = {way: [] for way in WAYS}
        self.loop_thread = threading.current_thread()

    def __call__(self, fd: int) -> None:
        began = time.perf_counter_ns()
        if self.fake_s:
            time.sleep(self.fake_s)
        else:
            os.fdatasync(fd)
        if self.way:
            self.times[self.way].append(time.perf_counter_ns() - began)


class TimedAhead:
    """The io_uring fdatasync begun ahead (``ahead``), timed from its start to its end seen."""

    def __init__(self, ahead: FsyncAhead, fsync: TimedFsync) -> None:
        self.ahead = ahead
        self.fsync = fsync
        self.began = 0

    def start(self, fd: int) -> None:
        self.began = time.perf_counter_ns()
        self.ahead.start(fd)

    def spin(self, limit_ns: int) -> bool:
        return self.ahead.spin(limit_ns)

    async def done(self) -> None:
        try:
            await self.ahead.done()
        finally:
            self._timed()

    def ended(self) -> bool:
        try:
            ended = self.ahead.ended()
        except OSError:
            self._timed()
            raise
        if ended:
            self._timed()
        return ended

    def _timed(self) -> None:
        if self.fsync.way and self.began:
            self.fsync.times[self.fsync.way].append(time.perf_counter_ns() - self.began)
            self.began = 0

    def close(self) -> None:
        self.ahead.close()


def _set_way(route: FsyncRoute, way: str) -> None:
    # ``asleep`` and ``ring``: the lone submit never fdatasynced on the trio thread.
    route.use_loop = way not in ("thread", "asleep", "ring")
    # The trio thread forced: no wait to run again, no write is too long for it.
    route.late_ns = 10**15 if way == "loop" else HAND_OVERS_NS
    route.slow_ns = 10**15 if way == "loop" else SLOW_WRITE_NS


async def _drive(
    orders: int, warmup: int, block: int, fake_us: float, ways: tuple[str, ...] = WAYS
) -> dict[str, Any]:
    from ult_actors.config import load_config
    from ult_actors.journal import sqlite_store_opener
    from ult_actors.messages import OrderReply, OrderRequest, Submit
    from ult_actors.service import build_service

    fsync = TimedFsync(fake_us)
    route = FsyncRoute()
    # A fake disk has no ``ahead`` way: trio's timers (1 ms) cannot stand in for an
    # fdatasync the kernel runs beside the loop.
    ring = None if fake_us else open_fsync_ahead()
    ahead = TimedAhead(ring, fsync) if ring is not None else None
    if ahead is None:
        ways = tuple(way for way in ways if way not in _RING_WAYS)
    latency: dict[str, list[int]] = {way: [] for way in WAYS}
    cpu = dict.fromkeys(WAYS, 0.0)
    spin: IdleSpin | None = None  # the store's own, read once it is open
    loop_writes = dict.fromkeys(WAYS, 0)
    with short_tempdir("bfs-") as tmp:
        path = tmp / "ult.toml"
        path.write_text(_config_text(tmp, "durable") + '\n[journal]\nsynchronous = "full"\n')
        opener = sqlite_store_opener(
            Path(tmp) / "journal.db",
            synchronous="full",
            fsync=fsync,
            fsync_route=route,
            fsync_ahead=ahead,
        )
        service = build_service(
            load_config(path, env={}), env={}, rng=random.Random(7), store_opener=opener
        )
        ids = iter(range(1, 10**9))

        async def one(way: str) -> None:
            i = next(ids)
            request = OrderRequest(
                symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"f-{i}", broker="paper"
            )
            began = time.perf_counter_ns()
            reply = await service.gateway.handle(Submit(id=i, order=request))
            if way:
                latency[way].append(time.perf_counter_ns() - began)
            assert isinstance(reply, OrderReply), reply
            # A client's next request comes through the socket: the loop runs between orders.
            await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            with trio.fail_after(600):
                await nursery.start(service.run)
                for _ in range(warmup):
                    await one("")
                for _ in range(max(1, orders // block // len(ways))):
                    for way in ways:
                        _set_way(route, way)
                        store = await service.journal.get()
                        assert isinstance(store, SqliteStore)
                        spin = spin or store.idle_spin
                        store.fsync_ahead = ahead if way in _RING_WAYS else None
                        store.idle_spin = spin if way in ("ring", "ahead") else None
                        fsync.way = way
                        writes, began = route.loop_writes, time.process_time()
                        for _ in range(block):
                            await one(way)
                        cpu[way] += time.process_time() - began
                        loop_writes[way] += route.loop_writes - writes
                fsync.way = ""
            nursery.cancel_scope.cancel()
    result: dict[str, Any] = {"orders": orders, "block": block, "fake_fsync_us": fake_us}
    for way in ways:
        done = latency[way]
        p50 = statistics.median(done)
        fsync_p50 = statistics.median(fsync.times[way]) if fsync.times[way] else 0.0
        result[way] = {
            "p50_us": round(p50 / 1e3),
            "p90_us": round(statistics.quantiles(done, n=10)[8] / 1e3),
            "fsync_p50_us": round(fsync_p50 / 1e3),
            "beyond_fsync_us": round((p50 - fsync_p50) / 1e3),
            "cpu_per_order_us": round(cpu[way] / len(done) * 1e6),
            "on_the_trio_thread": round(loop_writes[way] / len(done), 2),
        }
    if spin is not None:
        result["idle_spin"] = {"watches": spin.watches, "seen": spin.seen}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=3000, help="measured orders, all ways (3000)")
    p.add_argument("--warmup", type=int, default=200, help="orders before measuring (200)")
    p.add_argument("--block", type=int, default=50, help="orders per way in turn (50)")
    p.add_argument(
        "--fake-fsync-us", type=float, default=0.0, help="sleep this long instead of fdatasync"
    )
    p.add_argument("--ways", default=",".join(WAYS), help=f"which ways, in turn ({','.join(WAYS)})")
    args = p.parse_args(argv)
    ways = tuple(args.ways.split(","))
    if not set(ways) <= set(WAYS):
        p.error(f"--ways: each of {', '.join(WAYS)}")
    result = trio.run(_drive, args.orders, args.warmup, args.block, args.fake_fsync_us, ways)
    load = os.getloadavg()[0]
    print(f"full, sequential, {args.orders} orders in blocks of {args.block}, load {load:.1f}")
    print(
        f"{'way':<8}{'p50 us':>8}{'p90 us':>8}{'fsync p50':>11}{'beyond fsync':>14}"
        f"{'CPU/order':>11}{'on trio thread':>16}"
    )
    for way in ways:
        if way not in result:
            print(f"{way:<8}(none: a fake fsync, or no io_uring here)")
            continue
        r = result[way]
        print(
            f"{way:<8}{r['p50_us']:>8}{r['p90_us']:>8}{r['fsync_p50_us']:>11}"
            f"{r['beyond_fsync_us']:>14}{r['cpu_per_order_us']:>11}{r['on_the_trio_thread']:>16}"
        )
    if "idle_spin" in result:
        watched = result["idle_spin"]
        print(
            f"ahead's idle loop watched {watched['watches']} fdatasyncs (warm-up too),"
            f" saw {watched['seen']} of them end"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
