"""An idle journal commits a lone record on the trio thread; fsyncs and bursts keep the writer's."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Literal

import trio
import trio.testing

from tests.journal.harness import order, rows_on_disk
from ult_actors.journal.sqlite import SqliteStore, open_sqlite_store


def commit_threads(store: SqliteStore) -> list[int]:
    """The ids of the threads that ran each COMMIT on the journal's write connection."""
    threads: list[int] = []

    def trace(statement: str) -> None:
        if statement == "COMMIT":
            threads.append(threading.get_ident())

    conn = store._wconn
    assert isinstance(conn, sqlite3.Connection)
    conn.set_trace_callback(trace)
    return threads


async def test_an_idle_journal_commits_a_lone_record_on_the_trio_thread(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        threads = commit_threads(store)
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        assert rows_on_disk(path) == {"c-1": "pending_new"}  # durable before it returned
        with trio.fail_after(10):
            await store.record(order("c-1", "filled", oid="b-1"))
        assert rows_on_disk(path) == {"c-1": "filled"}
        assert threads == [threading.get_ident()] * 2  # no hand-off to the writer's thread


async def test_with_fsync_or_in_a_burst_commits_stay_on_the_writers_thread(
    tmp_path: Path,
) -> None:
    here = threading.get_ident()
    synchronous: Literal["full", "normal"]
    for synchronous in ("full", "normal"):
        path = tmp_path / f"{synchronous}.db"
        async with open_sqlite_store(path, synchronous=synchronous) as store:
            threads = commit_threads(store)
            with trio.fail_after(20):
                if synchronous == "full":  # a lone record: its fsync stays off the loop
                    await store.record(order("c-1"), event="submit")
                else:  # a burst: group-committed on the writer's thread
                    async with trio.open_nursery() as nursery:
                        for i in range(200):
                            nursery.start_soon(store.record, order(f"c-{i}"))
            if synchronous == "full":
                assert threads and here not in threads
            else:
                # The burst's first few records may find the writer idle and commit inline;
                # the burst itself goes to the writer's thread.
                assert any(thread != here for thread in threads)
                assert store.records == 200
                assert store.commits < 200 // 4
                assert len(rows_on_disk(path)) == 200


async def test_news_and_a_record_committed_inline_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, sync_interval_s=5.0) as store:
        store.record_soon(order("c-1", "new", oid="b-1"))
        store.record_soon(order("c-1", "filled", oid="b-1"))
        with trio.fail_after(10):
            await store.record(order("c-2"), event="submit")  # the news shares its commit
        assert rows_on_disk(path) == {"c-1": "filled", "c-2": "pending_new"}
        assert [e.order.status for e in await store.history("c-1")] == ["filled"]


class _TaskSteps(trio.abc.Instrument):
    """Names the tasks that take a step while it is installed."""

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.tasks.append(task.name)


async def test_a_record_finding_the_writer_idle_commits_in_its_own_step(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("c-0"), event="submit")
            await trio.testing.wait_all_tasks_blocked()  # the writer is idle again
        steps = _TaskSteps()
        trio.lowlevel.add_instrument(steps)
        try:
            await store.record(order("c-1"), event="submit")
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert rows_on_disk(path) == {"c-0": "pending_new", "c-1": "pending_new"}
        # On disk with no other task having run: no hand-off to the writer and back.
        assert steps.tasks == []


async def test_one_commit_per_order_when_each_answer_follows_its_submit_at_once(
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
        # Each answer rode with the next submit (the last one waits for company).
        assert store.commits == 5
        assert len(rows_on_disk(path)) == 5
