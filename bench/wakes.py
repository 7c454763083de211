"""Wake-ups per sequential order, by server thread, through the real socket.

A sequential order's latency pays for every wake-up on its path, not only for
CPU: each time a thread of ``ult serve`` goes to sleep and is woken again it
costs a context switch, and while the order is in flight a woken thread
competes with the client for the machine's cores. This counts, per order:

- by thread (from ``/proc/PID/task/*``, exact, no tooling): voluntary context
  switches (the thread slept: each one is a wake-up later), involuntary ones
  (preempted), times scheduled, CPU;
- with ``--perf``: which thread wakes which (``sched:sched_waking``, the waker
  and the woken side by side, the client included) and the server's syscalls
  by thread (``raw_syscalls:sys_enter``), from ``perf record``;
- with ``--split``: where a round trip's wall time goes, from the socket
  syscalls' kernel timestamps on both sides (``perf record`` of the client's
  send/recv and the server's read/write): client send -> server's read returns
  -> server's reply write -> client's read returns.

    python -m bench.wakes                       # default config, 3000 sequential orders
    python -m bench.wakes --perf --orders 2000  # who wakes whom, syscalls by thread
    python -m bench.wakes --split --orders 2000
    python -m bench.wakes --memory              # journal and paper file off

The service is the bench's own (``bench.ult``): a warm-up of sequential
orders, then ``--orders`` sequential orders through one ``AsyncClient``.
``perf`` must be on PATH and allowed to trace (root, or a low
``perf_event_paranoid``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import Budget, short_tempdir
from bench.ult import VARIANTS, sequential, start_service, write_config

#: Per thread name: voluntary switches, involuntary switches, times scheduled, ns on a core.
Counts = dict[str, tuple[int, int, int, int]]


def thread_name(pid: int, tid: int | str) -> str:
    """A server thread's name for the tables: ``trio`` for the main thread, else the OS name
    up to its ``:`` (the journal's threads name their file after it)."""
    if str(tid) == str(pid):
        return "trio"
    try:
        return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip().split(":")[0]
    except OSError:
        return f"gone-{tid}"


def thread_counts(pid: int) -> Counts:
    """Every thread's switches, times scheduled and CPU so far, summed by name."""
    out: Counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            ran, _, slices = map(int, Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split())
        except OSError:  # the thread ended meanwhile
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        voluntary = int(fields["voluntary_ctxt_switches"])
        involuntary = int(fields["nonvoluntary_ctxt_switches"])
        name = thread_name(pid, tid)
        v, i, s, r = out.get(name, (0, 0, 0, 0))
        out[name] = (v + voluntary, i + involuntary, s + slices, r + ran)
    return out


def per_order(before: Counts, after: Counts, n: int) -> dict[str, dict[str, float]]:
    """The difference of two ``thread_counts`` per order, busiest thread first."""
    rows = {}
    for name, (v, i, s, r) in after.items():
        v0, i0, s0, r0 = before.get(name, (0, 0, 0, 0))
        rows[name] = {
            "voluntary": round((v - v0) / n, 3),
            "involuntary": round((i - i0) / n, 3),
            "scheduled": round((s - s0) / n, 3),
            "cpu_us": round((r - r0) / n / 1e3, 1),
        }
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["cpu_us"]))


class PerfRecord:
    """``perf record`` of some events on some processes, parsed by ``perf script``."""

    def __init__(self, out: Path, events: list[str], pids: list[int] | None) -> None:
        """Record ``events`` of ``pids``' threads, or of every CPU with ``pids`` None."""
        self.out = out
        which = ["-a"] if pids is None else ["-p", ",".join(map(str, pids))]
        self._proc = subprocess.Popen(
            ["perf", "record", "-q", "-o", str(out), "-e", ",".join(events), *which],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)  # perf attaches before the measured orders start; no result hangs on it

    def stop(self) -> list[str]:
        """Stop recording; ``perf script``'s lines."""
        self._proc.send_signal(signal.SIGINT)
        _, err = self._proc.communicate(timeout=60)
        if self._proc.returncode not in (0, -signal.SIGINT):
            raise RuntimeError(f"perf record failed: {err.decode(errors='replace')}")
        script = subprocess.run(
            ["perf", "script", "-i", str(self.out), "-F", "comm,tid,time,event,trace"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return script.stdout.splitlines()


_LINE = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<tid>\d+)\s+(?P<time>[\d.]+):\s+(?P<event>\S+):\s*(?P<trace>.*)$"
)
_WOKEN = re.compile(r"comm=(?P<comm>.+?) pid=(?P<pid>\d+)")
_SYSCALL = re.compile(r"NR (?P<nr>\d+)")
_SWITCH = re.compile(r"prev_pid=(?P<prev>\d+) .*next_pid=(?P<next>\d+)")


class OnCpu:
    """When some threads ran, from ``sched:sched_switch`` events of every CPU."""

    def __init__(self, tids: set[int]) -> None:
        self._tids = tids
        self._since: dict[int, float] = {}
        self.spans: dict[int, list[tuple[float, float]]] = {t: [] for t in tids}

    def switch(self, t: float, trace: str) -> None:
        m = _SWITCH.search(trace)
        if m is None:
            return
        prev, nxt = int(m["prev"]), int(m["next"])
        if prev in self._tids and prev in self._since:
            self.spans[prev].append((self._since.pop(prev), t))
        if nxt in self._tids:
            self._since[nxt] = t

    def ran(self, tid: int, a: float, b: float) -> float:
        """Seconds ``tid`` was on a core between ``a`` and ``b`` (spans still open count
        from their start)."""
        total = sum(max(0.0, min(b, e) - max(a, s)) for s, e in self.spans[tid] if e > a and s < b)
        since = self._since.get(tid)
        return total + (max(0.0, b - max(a, since)) if since is not None and since < b else 0.0)


#: The x86-64 numbers of the syscalls the service makes per order (perf's ``raw_syscalls``
#: give numbers only); others are shown by number.
SYSCALLS = {
    0: "read", 1: "write", 3: "close", 7: "poll", 8: "lseek", 10: "mprotect", 17: "pread64",
    18: "pwrite64", 19: "readv", 20: "writev", 23: "select", 28: "madvise", 44: "sendto",
    45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 72: "fcntl", 74: "fsync", 75: "fdatasync",
    202: "futex", 228: "clock_gettime", 230: "clock_nanosleep", 232: "epoll_wait",
    233: "epoll_ctl", 257: "openat", 281: "epoll_pwait", 290: "eventfd2",
}  # fmt: skip


def wakes_and_syscalls(
    lines: list[str], server: int, tids: dict[int, str], n: int
) -> tuple[
    dict[str, float], dict[str, dict[str, tuple[float, float]]], dict[str, tuple[float, float]]
]:
    """From ``perf script`` lines: wake-ups per order as "waker -> woken"; the server's
    syscalls by thread: (calls, microseconds inside them) per order; and the trio
    thread's futex waits by the thread that ended them (the one that let go of the GIL,
    mostly): (waits, microseconds) per order."""

    def who(tid: int) -> str:
        return tids.get(tid, "client" if tid != server else "trio")

    wakes: collections.Counter[str] = collections.Counter()
    calls: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inside: dict[str, dict[str, float]] = collections.defaultdict(
        lambda: collections.defaultdict(float)
    )
    entered: dict[int, tuple[str, float]] = {}
    waited: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for line in lines:
        m = _LINE.match(line)
        if m is None:
            continue
        tid, event = int(m["tid"]), m["event"]
        if event.startswith("sched:sched_waking"):
            woken = _WOKEN.search(m["trace"])
            if woken is not None:
                wakes[f"{who(tid)} -> {who(int(woken['pid']))}"] += 1
                wait = entered.get(server)
                if int(woken["pid"]) == server and wait is not None and wait[0] == "futex":
                    ended = waited[who(tid)]
                    ended[0] += 1
                    ended[1] += float(m["time"]) - wait[1]
                    entered[server] = ("futex, woken", wait[1])  # counted once
        elif event.startswith("raw_syscalls:sys_") and tid in tids:
            nr = _SYSCALL.search(m["trace"])
            if nr is None:
                continue
            name = SYSCALLS.get(int(nr["nr"]), nr["nr"])
            if event.startswith("raw_syscalls:sys_enter"):
                calls[tids[tid]][name] += 1
                entered[tid] = (name, float(m["time"]))
            elif tid in entered and entered[tid][0].startswith(name):
                inside[tids[tid]][name] += float(m["time"]) - entered.pop(tid)[1]
    return (
        {k: round(v / n, 3) for k, v in wakes.most_common()},
        {
            thread: {
                k: (round(v / n, 3), round(inside[thread][k] / n * 1e6, 1))
                for k, v in c.most_common()
                if v / n >= 0.005
            }
            for thread, c in sorted(calls.items())
        },
        {
            k: (round(c / n, 3), round(us / n * 1e6, 1))
            for k, (c, us) in sorted(waited.items(), key=lambda kv: -kv[1][1])
        },
    )


def round_trip_split(lines: list[str], client: int, server: int) -> dict[str, float]:
    """Median microseconds of each leg of a round trip, from the socket syscalls' times,
    and of the part of it the thread that had the leg's work ran on a core.

    Legs: the client's send begins -> the server's read returns (its wake, the loop's
    epoll round, or the end of what it still did for the order before; the server's
    time on a core), -> the server's reply write begins (its work on the order), -> the
    client's read returns (the client's wake; the client's time on a core). Beside them:
    the server's reply write -> its next ``epoll_wait`` (what the loop does for an order
    after answering it). Only round trips seen whole are counted.
    """
    on_cpu = OnCpu({client, server})
    trips: list[tuple[float, float, float, float]] = []
    tails: list[tuple[float, float]] = []
    sent = read = replied = None
    last_reply = None
    for line in lines:
        m = _LINE.match(line)
        if m is None:
            continue
        tid, t, event = int(m["tid"]), float(m["time"]), m["event"]
        eagain = m["trace"].endswith("0xfffffffffffffff5")
        if event.startswith("sched:sched_switch"):
            on_cpu.switch(t, m["trace"])
        elif tid == server and event.endswith("sys_enter_epoll_wait"):
            if last_reply is not None:
                tails.append((last_reply, t))
                last_reply = None
        elif tid == client and event.endswith("sys_enter_sendto"):
            sent, read, replied = t, None, None
        elif tid == server and event.endswith("sys_exit_read") and sent is not None:
            if read is None and not eagain:
                read = t
        elif tid == server and event.endswith("sys_enter_write") and read is not None:
            if replied is None:
                replied = last_reply = t
        elif (
            tid == client
            and event.endswith("sys_exit_recvfrom")
            and replied is not None
            and not eagain  # the reply's read (a read before it may have found nothing)
        ):
            trips.append((sent, read, replied, t))  # type: ignore[arg-type]
            sent = read = replied = None
    legs: dict[str, list[float]] = collections.defaultdict(list)
    for a, b, c, d in trips:
        legs["client send -> server read"].append(b - a)
        legs["  the server on a core"].append(on_cpu.ran(server, a, b))
        legs["server read -> reply write"].append(c - b)
        legs["  the server on a core "].append(on_cpu.ran(server, b, c))
        legs["reply write -> client read"].append(d - c)
        legs["  the client on a core"].append(on_cpu.ran(client, c, d))
        legs["round trip"].append(d - a)
        legs["  the server on a core  "].append(on_cpu.ran(server, a, d))
    for a, b in tails:
        legs["server: reply write -> next epoll_wait"].append(b - a)
        legs["  the server on a core   "].append(on_cpu.ran(server, a, b))
    return {k: round(statistics.median(v) * 1e6, 1) for k, v in legs.items()} | {
        "round trips": len(trips)
    }


async def measure(
    orders: int, memory: bool, perf: bool, split: bool, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One service: warm up, then ``orders`` sequential orders; per-order figures."""
    overrides = VARIANTS["journal off, paper account in memory"] if memory else None
    with short_tempdir("bw-") as tmp:
        (tmp / "run").mkdir(mode=0o700)
        service = await start_service(tmp, write_config(tmp, overrides), env=env)
        try:
            await sequential(service.socket, Budget(300, 10.0))
            tids = {
                int(t): thread_name(service.pid, t) for t in os.listdir(f"/proc/{service.pid}/task")
            }
            recorder = None
            if perf or split:
                events = (
                    ["sched:sched_waking", "raw_syscalls:sys_enter", "raw_syscalls:sys_exit"]
                    if perf
                    else [  # the client's socket calls and the server's (``os.read``/``os.write``)
                        "syscalls:sys_enter_sendto",
                        "syscalls:sys_exit_recvfrom",
                        "syscalls:sys_exit_read",
                        "syscalls:sys_enter_write",
                        "syscalls:sys_enter_epoll_wait",
                        "sched:sched_switch",
                    ]
                )
                # This process is the client: its wakes and socket calls are half the story.
                recorder = PerfRecord(
                    tmp / "perf.data", events, [service.pid, os.getpid()] if perf else None
                )
            before = thread_counts(service.pid)
            result = await sequential(service.socket, Budget(orders, 120.0), server_pid=service.pid)
            after = thread_counts(service.pid)
            lines = recorder.stop() if recorder is not None else []
        finally:
            await service.stop()
    n = result["n"]
    out: dict[str, Any] = {
        "orders": n,
        "p50_us": result["p50_us"],
        "server_cpu_us": result["server_cpu_us"],
        "threads": per_order(before, after, n),
    }
    if perf:
        out["wakes"], out["syscalls"], out["trio_waits"] = wakes_and_syscalls(
            lines, service.pid, tids, n
        )
    if split:
        out["split_us"] = round_trip_split(lines, os.getpid(), service.pid)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--memory", action="store_true", help="journal off, paper file off")
    p.add_argument("--perf", action="store_true", help="who wakes whom, syscalls by thread")
    p.add_argument("--split", action="store_true", help="a round trip's wall time by leg")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the service's environment (e.g. ULT_LOG_LEVEL=warning)",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    for _ in range(args.rounds):
        result = trio.run(measure, args.orders, args.memory, args.perf, args.split, env)
        if args.json:
            print(json.dumps(result))
            continue
        print(
            f"{result['orders']} sequential orders, p50 {result['p50_us']} us, server CPU"
            f" {result['server_cpu_us']} us an order; by thread, an order:"
        )
        for name, t in result["threads"].items():
            if t["scheduled"] >= 0.001:
                print(
                    f"  {name:14} voluntary {t['voluntary']:6.3f}  involuntary"
                    f" {t['involuntary']:6.3f}  scheduled {t['scheduled']:6.3f}"
                    f"  cpu {t['cpu_us']:6.1f} us"
                )
        for key, title in (
            ("wakes", "wake-ups an order (waker -> woken)"),
            ("split_us", "round trip, median us"),
        ):
            if key in result:
                print(f"{title}:")
                for k, v in result[key].items():
                    print(f"  {k:40} {v}")
        for name, calls in result.get("syscalls", {}).items():
            print(
                f"syscalls an order, {name} (calls / us inside): "
                + ", ".join(f"{k} {c} / {us}" for k, (c, us) in calls.items())
            )
        if "trio_waits" in result:
            print(
                "the trio thread's futex waits an order, by the thread that ended them"
                " (waits / us): "
                + ", ".join(f"{k} {c} / {us}" for k, (c, us) in result["trio_waits"].items())
            )


if __name__ == "__main__":
    main()
