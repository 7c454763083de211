"""A record is one append to the change log, on the trio thread when idle; SQLite runs only on
the fold's thread. With ``full`` the append and its fsync run on the writer's thread, or on the
trio thread for a lone batch when the loop has nothing else to run and that way is faster."""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.journal.harness import order, records_in_log, rows_in_file, rows_on_disk
from ult_actors.errors import JournalUnavailable
from ult_actors.journal.fsync_route import FsyncRoute
from ult_actors.journal.sqlite import SqliteStore, open_sqlite_store


def sqlite_threads(store: SqliteStore) -> list[tuple[str, str]]:
    """(thread name, statement) of every statement run on the journal's write connection."""
    seen: list[tuple[str, str]] = []

    def trace(statement: str) -> None:
        seen.append((threading.current_thread().name, statement))

    conn = store._wconn
    assert isinstance(conn, sqlite3.Connection)
    conn.set_trace_callback(trace)
    return seen


async def test_a_record_is_appended_on_the_trio_thread_and_folded_on_the_folds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, fold_interval_s=3600) as store:
        seen = sqlite_threads(store)
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            await store.record(order("c-1", "filled", oid="b-1"))
        assert seen == []  # no SQLite on the order's path, nor anywhere yet
        assert rows_on_disk(path) == {"c-1": "filled"}  # the log has it: a kill -9 keeps it
        assert rows_in_file(path) == {}
        with trio.fail_after(10):
            await store.in_file()  # hurries the fold
        assert rows_in_file(path) == {"c-1": "filled"}
        assert store.folds == 1
        assert {thread for thread, _ in seen} == {"journal-fold:journal.db"}
        assert [s for _, s in seen if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ]  # both records in one transaction


class WayFsync:
    """Stands in for ``os.fdatasync``: notes each fsync's way ("loop": the trio thread,
    "thread": the writer's) with the records that had returned by then; one on the trio
    thread leaves it waiting ``late_us`` to run again (the kernel's figure, for the
    journal's ``FsyncRoute``), and each takes 150 us by the route's clock."""

    def __init__(self, late_us: int) -> None:
        self.loop = threading.current_thread()
        self.late_us = late_us
        self.run_delay_ns = 0
        self.clock_ns = 0
        self.returned: list[str] = []
        self.fsyncs: list[tuple[str, list[str]]] = []

    def run_delay(self) -> int:
        return self.run_delay_ns

    def now(self) -> int:
        return self.clock_ns

    def route(self) -> FsyncRoute:
        """The journal's route, reading this fsync's figures."""
        return FsyncRoute(run_delay_ns=self.run_delay, now_ns=self.now)

    def __call__(self, fd: int) -> None:
        way = "loop" if threading.current_thread() is self.loop else "thread"
        self.fsyncs.append((way, list(self.returned)))
        self.clock_ns += 150_000
        if way == "loop":
            self.run_delay_ns += self.late_us * 1000

    def ways(self) -> list[str]:
        return [way for way, _ in self.fsyncs]


async def record_lone_submits(store: SqliteStore, fsync: WayFsync, n: int) -> None:
    """Record ``c-0`` .. ``c-<n-1>`` one at a time, each when the loop has nothing else to run."""
    with trio.fail_after(10):
        for i in range(n):
            await trio.testing.wait_all_tasks_blocked()
            await store.record(order(f"c-{i}"), event="submit")
            fsync.returned.append(f"c-{i}")


async def test_with_full_a_lone_record_on_an_idle_loop_is_fsynced_there_before_it_returns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    fsync = WayFsync(late_us=20)
    route = fsync.route()
    async with open_sqlite_store(path, synchronous="full", fsync=fsync, fsync_route=route) as store:
        await record_lone_submits(store, fsync, 3)
    # On the trio thread, which runs again promptly; each fsync before its record returned.
    assert fsync.fsyncs == [("loop", []), ("loop", ["c-0"]), ("loop", ["c-0", "c-1"])]
    assert len(rows_on_disk(path)) == 3


async def test_with_full_lone_records_go_to_the_writers_thread_while_the_loop_runs_late(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    # The trio thread waits a time slice to run after its fsync on a machine with busy cores.
    fsync = WayFsync(late_us=3_000)
    route = fsync.route()
    async with open_sqlite_store(path, synchronous="full", fsync=fsync, fsync_route=route) as store:
        await record_lone_submits(store, fsync, 6)
    assert fsync.ways() == ["loop", "thread", "thread", "thread", "thread", "thread"]


async def test_with_full_a_record_while_the_loop_has_work_is_fsynced_on_the_writers_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    fsync = WayFsync(late_us=0)
    route = fsync.route()
    async with open_sqlite_store(path, synchronous="full", fsync=fsync, fsync_route=route) as store:
        await record_lone_submits(store, fsync, 2)
        busy = True

        async def keep_the_loop_busy() -> None:
            while busy:
                await trio.lowlevel.checkpoint()  # runnable again every round

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_the_loop_busy)
                await store.record(order("c-2"), event="submit")
                busy = False
    # Not the loop's: a task had to wait behind it.
    assert fsync.ways() == ["loop", "loop", "thread"]


async def test_with_full_a_failed_fsync_on_the_trio_thread_refuses_the_submit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    failing = threading.Event()
    failing.set()
    loop = threading.current_thread()
    ways: list[bool] = []

    def fsync(fd: int) -> None:
        ways.append(threading.current_thread() is loop)
        if failing.is_set():
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    # The trio thread always runs again at once, its writes take no time.
    route = FsyncRoute(run_delay_ns=lambda: 0, now_ns=lambda: 0)
    async with open_sqlite_store(
        path, synchronous="full", fsync=fsync, probe_interval_s=0.01, fsync_route=route
    ) as store:
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(JournalUnavailable, match="I/O error"):
                await store.record(order("c-1"), event="submit")  # a first lone batch: the loop's
            assert ways[0] is True
            assert await store.get("c-1") is None  # refused: it never left
            failing.clear()
            while store.unavailable is not None:
                await store.availability_changed()
            await store.record(order("c-2"), event="submit")
        assert [row[1] for row in records_in_log(path)] == ["c-2"]


async def test_with_full_a_lone_record_goes_to_the_writers_thread_and_back_without_the_writer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    fsynced: list[int] = []
    async with open_sqlite_store(path, synchronous="full", fsync=fsynced.append) as store:
        tasks = await tasks_stepping_for_a_lone_record(store)
        assert len(fsynced) == 2  # each record waited for its own fsync
        assert rows_on_disk(path) == {"c-0": "pending_new", "c-1": "pending_new"}
        # Handed to the thread and answered from it: the writer task never woke for it.
        assert [name for name in tasks if name.endswith("._write_forever")] == []


async def a_lone_record_then_a_burst_of_20(store: SqliteStore) -> None:
    """Record ``c-0`` alone, then ``c-1`` .. ``c-20`` all started in one scheduler round."""
    await store.record(order("c-0"), event="submit")
    await trio.testing.wait_all_tasks_blocked()
    async with trio.open_nursery() as nursery:
        for i in range(1, 21):  # all started, so all record in one round
            nursery.start_soon(functools.partial(store.record, order(f"c-{i}"), event="submit"))


async def test_with_full_a_burst_of_records_in_one_round_shares_one_fsync(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    fsynced: list[int] = []
    async with open_sqlite_store(path, synchronous="full", fsync=fsynced.append) as store:
        with trio.fail_after(10):
            await a_lone_record_then_a_burst_of_20(store)
        assert (store.commits, len(fsynced)) == (2, 2)
        assert len(rows_on_disk(path)) == 21


async def test_with_full_a_failed_fsync_refuses_the_submit_and_the_log_reads_on_past_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    failing = threading.Event()

    def fsync(fd: int) -> None:
        if failing.is_set():
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    async with open_sqlite_store(
        path, synchronous="full", fsync=fsync, probe_interval_s=0.01
    ) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            await trio.testing.wait_all_tasks_blocked()  # the next one is handed over
            failing.set()
            with pytest.raises(JournalUnavailable, match="I/O error"):
                await store.record(order("c-2"), event="submit")
            assert await store.get("c-2") is None  # refused: it never left
            failing.clear()
            while store.unavailable is not None:
                await store.availability_changed()
            await store.record(order("c-3"), event="submit")
        assert [row[1] for row in records_in_log(path)] == ["c-1", "c-3"]
    async with open_sqlite_store(path) as store:
        assert {o.client_order_id for o in await store.list_orders()} == {"c-1", "c-3"}


class _TaskSteps(trio.abc.Instrument):
    """Names the tasks that take a step while it is installed."""

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.tasks.append(task.name)


async def tasks_stepping_for_a_lone_record(store: SqliteStore) -> list[str]:
    """Record ``c-0``, let the writer go idle, record ``c-1``; the tasks that took a step
    while ``c-1`` was recorded (the caller's own, if it waited)."""
    with trio.fail_after(10):
        await store.record(order("c-0"), event="submit")
        await trio.testing.wait_all_tasks_blocked()  # the writer is idle again
        steps = _TaskSteps()
        trio.lowlevel.add_instrument(steps)
        try:
            await store.record(order("c-1"), event="submit")
        finally:
            trio.lowlevel.remove_instrument(steps)
    return steps.tasks


async def test_a_record_finding_the_writer_idle_appends_in_its_own_step(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        tasks = await tasks_stepping_for_a_lone_record(store)
        assert rows_on_disk(path) == {"c-0": "pending_new", "c-1": "pending_new"}
        # On disk with no other task having run: no hand-off to the writer and back.
        assert tasks == []


async def test_one_append_per_order_when_each_answer_follows_its_submit_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, sync_interval_s=60.0) as store:
        with trio.fail_after(10):
            for i in range(5):
                await store.record(order(f"c-{i}"), event="submit")
                # The venue's answer, journaled before the writer has run again.
                store.record_soon(order(f"c-{i}", "filled", oid=f"b-{i}"))
                await trio.testing.wait_all_tasks_blocked()
        # The answers went to the fold's thread, not to an append of their own.
        assert store.commits == 5
        assert len(rows_on_disk(path)) == 5


async def test_every_record_of_a_burst_appends_in_its_own_step_in_seq_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, sync_interval_s=60.0, fold_interval_s=3600) as store:
        with trio.fail_after(10):
            await store.record(order("c-0"), event="submit")
            await trio.testing.wait_all_tasks_blocked()  # the writer is idle
            steps = _TaskSteps()
            trio.lowlevel.add_instrument(steps)
            try:
                async with trio.open_nursery() as nursery:
                    for i in range(1, 21):  # all started, so all record in one round
                        record = functools.partial(store.record, order(f"c-{i}"), event="submit")
                        nursery.start_soon(record, name=f"record c-{i}")
            finally:
                trio.lowlevel.remove_instrument(steps)
        # One append each, made in the record's first step: none waited for the writer,
        # which never woke.
        assert store.commits == 21
        assert sorted(name for name in steps.tasks if name.startswith("record")) == sorted(
            f"record c-{i}" for i in range(1, 21)
        )
        assert [name for name in steps.tasks if name.endswith("._write_forever")] == []
        logged = records_in_log(path)
        assert {row[1] for row in logged} == {f"c-{i}" for i in range(21)}
        assert [row[0] for row in logged] == list(range(1, 22))  # the log in seq order
