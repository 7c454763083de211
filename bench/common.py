"""Pieces every benchmark section shares: framing, percentiles, budgets, child processes.

The benchmark's frames are the IPC protocol's: a 4-byte big-endian length,
then msgpack of a request or reply union from ``ult_actors.messages``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import trio

from ult_actors.messages import OrderRequest, Reply, Request, Submit

#: The repository root: children run ``python -m bench.…`` with it on ``PYTHONPATH``.
ROOT = Path(__file__).resolve().parent.parent
HEADER = 4

encoder = msgspec.msgpack.Encoder()
request_decoder = msgspec.msgpack.Decoder(Request)
reply_decoder = msgspec.msgpack.Decoder(Reply)


def frame(payload: bytes) -> bytes:
    """``payload`` with its length prefix."""
    return len(payload).to_bytes(HEADER, "big") + payload


def order_request(i: int) -> OrderRequest:
    """The order every section sends: a 1-share market buy, unique client order id."""
    return OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"bench-{i}")


def submit_frame(i: int) -> bytes:
    """A framed ``Submit`` of ``order_request(i)`` with request id ``i``."""
    return frame(encoder.encode(Submit(id=i, order=order_request(i))))


def split_frames(buf: bytearray) -> list[bytes]:
    """Take every complete frame off the front of ``buf``."""
    out: list[bytes] = []
    pos = 0
    end = len(buf)
    while end - pos >= HEADER:
        size = int.from_bytes(buf[pos : pos + HEADER], "big")
        if end - pos - HEADER < size:
            break
        out.append(bytes(buf[pos + HEADER : pos + HEADER + size]))
        pos += HEADER + size
    del buf[:pos]
    return out


class Unavailable(Exception):
    """A section cannot run here; the message says what is missing."""


@dataclass(frozen=True)
class Budget:
    """How much one measurement may take: whichever of count and seconds comes first."""

    count: int
    seconds: float


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; ``nan`` for no values."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def latency_summary(samples_ns: list[int]) -> dict[str, Any]:
    """p50/p99/p99.9 in microseconds, plus the sample count and round trips per second."""
    samples = sorted(samples_ns)
    if not samples:  # JSON has no NaN: say "no figure" instead
        return {"n": 0, "per_s": None, "p50_us": None, "p99_us": None, "p99_9_us": None}
    total_s = sum(samples) / 1e9
    return {
        "n": len(samples),
        "per_s": round(len(samples) / total_s, 1) if total_s else None,
        "p50_us": round(percentile(samples, 0.50) / 1e3, 1),
        "p99_us": round(percentile(samples, 0.99) / 1e3, 1),
        "p99_9_us": round(percentile(samples, 0.999) / 1e3, 1),
    }


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (default: this one), from /proc."""
    path = f"/proc/{pid or 'self'}/status"
    with open(path) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in {path}")


_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far.

    CPU time per message is what the benchmark compares when the machine is
    shared: wall-clock figures move with other people's load, this moves far
    less. Resolution is one clock tick (10 ms), so measure seconds, not steps.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


class CpuMeter:
    """CPU microseconds a server process spent per message over one measurement."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.start = cpu_seconds(pid) if pid else 0.0

    def per_message_us(self, messages: int) -> float | None:
        if not self.pid or not messages:
            return None
        return round((cpu_seconds(self.pid) - self.start) / messages * 1e6, 1)


class ClientCpuMeter:
    """CPU microseconds the calling thread (a benchmark's client loop) spent per message."""

    def __init__(self) -> None:
        self.start = time.thread_time()

    def per_message_us(self, messages: int) -> float | None:
        if not messages:
            return None
        return round((time.thread_time() - self.start) / messages * 1e6, 1)


@contextmanager
def short_tempdir(prefix: str) -> Iterator[Path]:
    """A fresh directory under /tmp, short enough for a Unix socket path."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def python() -> str:
    """The interpreter running the bench (the project's .venv)."""
    return sys.executable


def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: ours, quiet logs, the project importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("ULT_LOG_LEVEL", "warning")
    env.update(extra)
    return env


class LineReader:
    """Lines from a child's stdout, keeping whatever arrived after the last one."""

    def __init__(self, stream: trio.abc.ReceiveStream, limit: int = 65536) -> None:
        self.stream = stream
        self.limit = limit
        self._buf = bytearray()

    async def line(self) -> bytes:
        """The next line without its newline; ``EOFError`` if the child closes first."""
        while b"\n" not in self._buf:
            chunk = await self.stream.receive_some(4096)
            if not chunk:
                raise EOFError(f"child closed its output after {bytes(self._buf)!r}")
            self._buf += chunk
            if len(self._buf) > self.limit:
                raise RuntimeError("child wrote an over-long line")
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        return line


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    """The first line a child writes (for children that say one thing: ``ready``)."""
    return await LineReader(stream).line()


async def stop_process(proc: trio.Process, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    if proc.returncode is None:
        proc.terminate()
        with trio.move_on_after(grace_s):
            await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@asynccontextmanager
async def ready_child(argv: list[str], name: str) -> AsyncIterator[trio.Process]:
    """A child process (``python argv``) once it has said ``ready``; stopped on leaving."""
    proc = await trio.lowlevel.open_process(
        [python(), *argv], stdout=subprocess.PIPE, env=child_env()
    )
    try:
        assert proc.stdout is not None
        with trio.fail_after(30):
            line = await read_line(proc.stdout)
        if line != b"ready":
            raise RuntimeError(f"{name} said {line!r}")
        yield proc
    finally:
        await stop_process(proc)


def now_s() -> float:
    """A monotonic clock for wall-time budgets."""
    return time.perf_counter()
