"""Measure the IPC path of a real ``ult serve``: pipelined pings, round trips, pipelined orders.

Run from the repository root: ``.venv/bin/python -m bench.ipc [--orders N] [--pings N]``.
Starts its own service on a temporary socket (paper broker, large starting
cash) and prints one line per figure. The pipelined figures add the server's
CPU per message: for pings that is the IPC layer's own cost per request.

``--instructions`` counts instead the server's instructions per request
(valgrind, every thread), steady on a shared machine where CPU time is not:
the service (journal off, paper account in memory; ``--setup default``: the
default configuration, journal and paper account files; ``--setup full``: that with
``journal.synchronous = "full"``, each fdatasync's time left out) and its socket server
run in one process under valgrind, driven through the socket by a raw client
in this process, for sequential and pipelined (window 128) pings and submits
(``--only submit``: submits only). Each figure is two runs, ``--warmup``
requests and then 0 or ``--requests`` more, differenced. A/B: run it in each
checkout.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trio

from bench.common import (
    CpuMeter,
    child_env,
    encoder,
    frame,
    short_tempdir,
    split_frames,
    submit_frame,
)
from bench.ult import FULL_SYNC, VARIANTS, write_config
from ult_actors.client import Client, order_request
from ult_actors.ipc.framing import FrameReader, ReplyCodec
from ult_actors.messages import Order, Ping
from ult_actors.testing.process import UltProcess

#: What ``--instructions`` measures: (request kind, window); window 1 is sequential.
KINDS = (("ping", 1), ("submit", 1), ("ping", 128), ("submit", 128))
#: ``--setup``: the service's configuration under ``--instructions`` (``bench.ult``'s variants).
SETUPS = {
    "memory": VARIANTS["journal off, paper account in memory"],
    "default": {},
    "full": VARIANTS[FULL_SYNC],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pings", type=int, default=20_000)
    p.add_argument("--orders", type=int, default=5_000)
    p.add_argument("--round-trips", type=int, default=500)
    args = p.parse_args()
    svc = UltProcess.serve(env={"PAPER_STARTING_CASH": "1000000000"}).start()
    try:
        assert svc.proc is not None
        server_pid = svc.proc.pid
        codec = ReplyCodec()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(svc.socket))
            data = b"".join(codec.encode(Ping(id=i)) for i in range(1, args.pings + 1))
            cpu = CpuMeter(server_pid)
            start = time.perf_counter()
            s.sendall(data)
            frames, got = FrameReader(), 0
            while got < args.pings:
                got += sum(1 for _ in frames.feed(s.recv(1 << 16)))
            rate = args.pings / (time.perf_counter() - start)
        print(
            f"pipelined pings, one connection: {rate:,.0f} replies/s,"
            f" server CPU {cpu.per_message_us(args.pings)} us/ping"
        )
        with Client(svc.socket) as c:
            start = time.perf_counter()
            for _ in range(args.round_trips):
                c.ping()
            rtt = (time.perf_counter() - start) / args.round_trips * 1e6
            print(f"blocking Client.ping round trip: {rtt:,.0f} us")
            start = time.perf_counter()
            for _ in range(args.round_trips // 5):
                c.submit("AAPL", "buy", 1)
            rtt = (time.perf_counter() - start) / (args.round_trips // 5) * 1e3
            print(f"blocking Client.submit round trip (market, paper): {rtt:,.2f} ms")
            batch = [order_request("AAPL", "buy", 1) for _ in range(args.orders)]
            cpu = CpuMeter(server_pid)
            start = time.perf_counter()
            results = c.submit_many(batch)
            rate = args.orders / (time.perf_counter() - start)
            ok = sum(1 for r in results if isinstance(r, Order))
            print(
                f"pipelined submits (submit_many): {rate:,.0f} orders/s,"
                f" {ok}/{args.orders} accepted, server CPU {cpu.per_message_us(args.orders)} us/order"
            )
    finally:
        svc.cleanup()


def _request_maker(kind: str, first_id: int) -> Callable[[int], bytes]:
    if kind == "submit":
        return lambda i: submit_frame(first_id + i)
    return lambda i: frame(encoder.encode(Ping(id=first_id + i)))


def drive(path: Path, kind: str, count: int, window: int, first_id: int) -> None:
    """Send ``count`` requests of ``kind`` with at most ``window`` in flight; wait for
    every reply. Submits get client order ids from ``first_id`` on."""
    make = _request_maker(kind, first_id)
    buf = bytearray()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        sent = min(window, count)
        s.sendall(b"".join(make(i) for i in range(sent)))
        answered = 0
        while answered < count:
            data = s.recv(1 << 16)
            if not data:
                raise RuntimeError("the service closed the connection")
            buf += data
            got = len(split_frames(buf))
            answered += got
            more = min(got, count - sent)
            if more:
                s.sendall(b"".join(make(sent + i) for i in range(more)))
                sent += more


def serve(state_dir: Path, setup: str) -> None:
    """The service (configured as ``SETUPS[setup]``) and its socket server in this
    process until SIGTERM; the file ``ready`` in ``state_dir`` says it accepts."""
    from ult_actors.logsetup import configure_logging

    with open(state_dir / "serve.log", "w") as log:
        writer = configure_logging(json=True, stream=log)
        try:
            trio.run(_serve, state_dir, setup)
        finally:
            writer.close()


async def _serve(state_dir: Path, setup: str) -> None:
    import random

    from ult_actors.collector import settle_after_start
    from ult_actors.config import load_config
    from ult_actors.ipc.server import serve_ipc, settings_from_config
    from ult_actors.service import build_service

    config = write_config(state_dir, SETUPS[setup])
    service = build_service(load_config(config, env={}), env={}, rng=random.Random(7))
    settings = settings_from_config(service.config, env={})
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await nursery.start(serve_ipc, service.gateway, settings)
            # The collector as ``ult serve`` leaves it once ready: without this the served
            # figures paid CPython's default young passes (~14k instructions a window order).
            settle_after_start()
            (state_dir / "ready").touch()
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def _instructions(kind: str, window: int, warmup: int, count: int, setup: str) -> int:
    """Instructions of one served run under cachegrind: ``warmup`` sequential
    requests, then ``count`` with ``window`` in flight."""
    with short_tempdir("bi-") as tmp:
        command = [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            sys.executable, "-m", "bench.ipc", "--serve", str(tmp), setup,
        ]  # fmt: skip
        proc = subprocess.Popen(command, env=child_env(), stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 600
            while not (tmp / "ready").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the served run did not start")
                time.sleep(0.2)
            path = tmp / "run" / "ult.sock"
            drive(path, kind, warmup, 1, 1)
            if count:
                drive(path, kind, count, window, 1_000_000)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    found = re.search(r"I\s+refs:\s+([\d,]+)", err)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{err[-2000:]}")
    return int(found.group(1).replace(",", ""))


def instructions(requests: int, warmup: int, setup: str = "memory", only: str | None = None) -> None:
    """Print the server's instructions per request for each of ``KINDS`` (those of
    kind ``only`` if given), the service configured as ``SETUPS[setup]``."""
    if shutil.which("valgrind") is None:
        print("unavailable: valgrind is not installed")
        return
    for kind, window in KINDS:
        if only is not None and kind != only:
            continue
        base = _instructions(kind, window, warmup, 0, setup)
        total = _instructions(kind, window, warmup, requests, setup)
        how = "sequential" if window == 1 else f"window {window}"
        print(f"{kind} {how}: {(total - base) / requests:,.0f} instructions/request")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "memory")
    elif "--instructions" in sys.argv:
        p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        p.add_argument("--instructions", action="store_true")
        p.add_argument("--requests", type=int, default=2_000)
        p.add_argument("--warmup", type=int, default=200)
        p.add_argument("--setup", choices=sorted(SETUPS), default="memory")
        p.add_argument("--only", choices=sorted({kind for kind, _ in KINDS}))
        args = p.parse_args()
        instructions(args.requests, args.warmup, args.setup, args.only)
    else:
        main()
