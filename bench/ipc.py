"""Measure the IPC path of a real ``ult serve``: pipelined pings, round trips, pipelined orders.

Run from the repository root: ``.venv/bin/python -m bench.ipc [--orders N] [--pings N]``.
Starts its own service on a temporary socket (paper broker, large starting
cash) and prints one line per figure. The pipelined figures add the server's
CPU per message: for pings that is the IPC layer's own cost per request.
"""

from __future__ import annotations

import argparse
import socket
import time

from bench.common import CpuMeter
from ult_actors.client import Client, order_request
from ult_actors.ipc.framing import FrameReader, ReplyCodec
from ult_actors.messages import Order, Ping
from ult_actors.testing.process import UltProcess


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


if __name__ == "__main__":
    main()
