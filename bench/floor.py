"""The floor: the least a Unix-socket order server on trio can do, and its two clients.

The server decodes each frame into the same typed ``Request`` union the
service reads (so the order Struct is fully validated by msgspec) and answers
with an ``OkReply`` ack. It answers every complete frame of one read with one
``send_all``, as a well-written server would. Nothing else: no actors, no
risk, no broker. Whatever the real service costs above this is the price of
what it does.

Run as a process: ``python -m bench.floor SOCKET`` serves until
killed and prints ``ready`` once it listens.

The clients measure the same way for the floor and for ``ult`` (see
``bench_ult``): sequential round trips, and one pipelining client keeping
``window`` requests in flight, sending one frame per ``send_all`` like a
client whose callers each submit one order.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from bench.common import (
    Budget,
    ClientCpuMeter,
    CpuMeter,
    encoder,
    frame,
    latency_summary,
    ready_child,
    reply_decoder,
    request_decoder,
    short_tempdir,
    split_frames,
    submit_frame,
)
from ult_actors.messages import OkReply, Reply, Request

READ_SIZE = 65536


def ack(request: Request) -> Reply:
    """The floor's answer to every request: an ``OkReply`` with its id."""
    return OkReply(id=request.id, detail="ack")


async def _serve_connection(stream: trio.SocketStream, answer: Callable[[Request], Reply]) -> None:
    buf = bytearray()
    async with stream:
        while True:
            try:
                data = await stream.receive_some(READ_SIZE)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            buf += data
            out = bytearray()
            for payload in split_frames(buf):
                out += frame(encoder.encode(answer(request_decoder.decode(payload))))
            if out:
                try:
                    await stream.send_all(out)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


async def serve(
    path: str,
    *,
    answer: Callable[[Request], Reply] = ack,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the floor protocol on a Unix socket at ``path`` until cancelled; each
    request is answered with ``answer(request)``."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(128)
    listener = trio.SocketListener(sock)
    task_status.started()
    await trio.serve_listeners(partial(_serve_connection, answer=answer), [listener])


async def _read_reply(stream: trio.SocketStream, buf: bytearray) -> Any:
    while True:
        frames = split_frames(buf)
        if frames:
            assert len(frames) == 1, "a sequential client gets one reply per request"
            return reply_decoder.decode(frames[0])
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise EOFError("server closed the connection")
        buf += data


async def sequential(
    path: str, budget: Budget, *, first_id: int = 1, server_pid: int | None = None
) -> dict[str, Any]:
    """One request at a time: send, wait for the ack, repeat."""
    cpu = CpuMeter(server_pid)
    samples: list[int] = []
    frames = [submit_frame(first_id + i) for i in range(budget.count)]
    clock = time.perf_counter_ns
    stop_at = clock() + int(budget.seconds * 1e9)
    stream = await trio.open_unix_socket(path)
    buf = bytearray()
    with trio.fail_after(budget.seconds + 60):
        async with stream:
            client_cpu = ClientCpuMeter()
            for data in frames:
                t0 = clock()
                await stream.send_all(data)
                await _read_reply(stream, buf)
                t1 = clock()
                samples.append(t1 - t0)
                if t1 > stop_at:
                    break
            client_cpu_us = client_cpu.per_message_us(len(samples))
    return {
        **latency_summary(samples),
        "server_cpu_us": cpu.per_message_us(len(samples)),
        "client_cpu_us": client_cpu_us,
    }


async def pipelined(
    path: str,
    budget: Budget,
    *,
    window: int = 128,
    first_id: int = 1,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """One connection keeping ``window`` requests in flight; messages answered per second."""
    cpu = CpuMeter(server_pid)
    frames = [submit_frame(first_id + i) for i in range(budget.count)]
    stream = await trio.open_unix_socket(path)
    slots = trio.Semaphore(window)
    sent = 0
    received = 0
    stop_at = time.perf_counter() + budget.seconds
    done_sending = trio.Event()

    async def send() -> None:
        nonlocal sent
        for data in frames:
            await slots.acquire()
            await stream.send_all(data)
            sent += 1
            if time.perf_counter() > stop_at:
                break
        done_sending.set()
        if received >= sent:
            nursery.cancel_scope.cancel()

    async def receive() -> None:
        nonlocal received
        buf = bytearray()
        while True:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                raise EOFError("server closed the connection")
            buf += data
            for payload in split_frames(buf):
                reply_decoder.decode(payload)
                received += 1
                slots.release()
            if done_sending.is_set() and received >= sent:
                nursery.cancel_scope.cancel()

    async with stream:
        t0 = time.perf_counter()
        client_cpu = ClientCpuMeter()
        with trio.fail_after(budget.seconds + 30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                nursery.start_soon(receive)
        elapsed = time.perf_counter() - t0
    return {
        "n": received,
        "window": window,
        "per_s": round(received / elapsed, 1),
        "server_cpu_us": cpu.per_message_us(received),
        "client_cpu_us": client_cpu.per_message_us(received),
    }


async def measure(seq: Budget, pipe: Budget, *, window: int = 128) -> dict[str, Any]:
    """Start the floor server as its own process and measure both clients against it."""
    with short_tempdir("bf-") as tmp:
        path = str(tmp / "floor.sock")
        async with ready_child(["-m", "bench.floor", path], "floor server") as proc:
            await sequential(path, Budget(min(200, seq.count), 5.0))  # warm up
            return {
                "sequential": await sequential(path, seq, server_pid=proc.pid),
                "pipelined": await pipelined(path, pipe, window=window, server_pid=proc.pid),
            }


def main(argv: list[str]) -> int:
    """``python -m bench.floor SOCKET``: serve until killed."""
    if len(argv) != 1:
        print("usage: python -m bench.floor SOCKET", file=sys.stderr)
        return 2

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, argv[0])
            print("ready", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
