"""``bench.wakes``' reading of ``perf script`` lines (the run itself needs perf and root)."""

from __future__ import annotations

from bench.wakes import round_trip_split, wakes_and_syscalls

CLIENT, SERVER, FOLD = 100, 200, 201


def line(comm: str, tid: int, t: float, event: str, trace: str = "") -> str:
    return f"{comm:>16} {tid:>6} {t:.6f}: {event}: {trace}"


def switch(t: float, prev: int, nxt: int) -> str:
    return line(
        "x", prev, t, "sched:sched_switch",
        f"prev_comm=a prev_pid={prev} prev_prio=120 prev_state=S ==> next_comm=b"
        f" next_pid={nxt} next_prio=120",
    )  # fmt: skip


def test_a_round_trip_is_split_into_its_legs_and_the_servers_time_on_a_core() -> None:
    lines = [
        switch(0.000000, 0, CLIENT),
        line("client", CLIENT, 0.000010, "syscalls:sys_enter_sendto"),
        switch(0.000020, CLIENT, 0),
        switch(0.000030, 0, SERVER),
        line("ult", SERVER, 0.000040, "syscalls:sys_exit_read", "0x20"),
        line("ult", SERVER, 0.000140, "syscalls:sys_enter_write"),
        switch(0.000150, SERVER, 0),  # preempted: 50 us off its core
        switch(0.000200, 0, SERVER),
        line("ult", SERVER, 0.000230, "syscalls:sys_enter_epoll_wait"),
        line("client", CLIENT, 0.000170, "syscalls:sys_exit_recvfrom", "0x40"),
    ]
    split = round_trip_split(sorted(lines, key=lambda s: float(s.split()[2][:-1])), CLIENT, SERVER)
    assert split["round trips"] == 1
    assert split["client send -> server read"] == 30.0
    assert split["  the server on a core"] == 10.0
    assert split["server read -> reply write"] == 100.0
    assert split["reply write -> client read"] == 30.0
    assert split["round trip"] == 160.0
    assert split["server: reply write -> next epoll_wait"] == 90.0
    assert split["  the server on a core   "] == 40.0


def test_wakes_are_counted_by_waker_and_woken_and_syscalls_by_thread() -> None:
    tids = {SERVER: "trio", FOLD: "journal-fold"}
    waking = "sched:sched_waking"
    lines = [
        line("ult", SERVER, 1.0, waking, f"comm=client pid={CLIENT} prio=120 target_cpu=001"),
        line("ult", SERVER, 1.1, waking, f"comm=journal-fold pid={FOLD} prio=120 target_cpu=000"),
        line("c", CLIENT, 1.2, waking, f"comm=python3 pid={SERVER} prio=120 target_cpu=001"),
        line("ult", SERVER, 1.3, "raw_syscalls:sys_enter", "NR 202 (1, 2, 3)"),
        line("f", FOLD, 1.300003, waking, f"comm=python3 pid={SERVER} prio=120 target_cpu=001"),
        line("ult", SERVER, 1.300004, "raw_syscalls:sys_exit", "NR 202 = 0"),
        line("ult", FOLD, 1.4, "raw_syscalls:sys_enter", "NR 75 (3)"),
        line("ult", FOLD, 1.401, "raw_syscalls:sys_exit", "NR 75 = 0"),
    ]
    wakes, calls, trio_waits = wakes_and_syscalls(lines, SERVER, tids, n=2)
    assert wakes == {
        "trio -> client": 0.5,
        "trio -> journal-fold": 0.5,
        "client -> trio": 0.5,
        "journal-fold -> trio": 0.5,
    }
    assert calls == {"journal-fold": {"fdatasync": (0.5, 500.0)}, "trio": {"futex": (0.5, 2.0)}}
    assert trio_waits == {"journal-fold": (0.5, 1.5)}  # its futex wait, ended by the fold
