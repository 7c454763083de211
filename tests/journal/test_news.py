"""The brokers' news (``record_soon``, ``record_fill``) goes to the fold's thread, not to the
change log: it costs the order's path no append and no encode, and is in the file with the
next fold. Every test folds only when hurried (``in_file``), so each fold is one the test
asks for."""

from __future__ import annotations

import functools
import sqlite3
import threading
from pathlib import Path

import trio
import trio.testing

from tests.journal.harness import fill, order, records_in_log, rows_in_file
from ult_actors.journal.sqlite import open_sqlite_store

#: No fold unless hurried.
NEVER = 3600.0


def fills_in_file(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT fill_id FROM fills ORDER BY fill_id")]
    finally:
        conn.close()


class _WriterSteps(trio.abc.Instrument):
    """Counts the journal writer task's steps while it is installed."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("._write_forever"):
            self.steps += 1


async def test_news_is_not_appended_and_is_in_the_file_with_the_next_fold(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            steps = _WriterSteps()
            trio.lowlevel.add_instrument(steps)
            try:
                store.record_soon(order("c-1", "accepted", oid="b-1"))
                store.record_soon(order("c-1", "filled", oid="b-1"))
                store.record_fill(fill("f-1"))
                await trio.testing.wait_all_tasks_blocked()
            finally:
                trio.lowlevel.remove_instrument(steps)
            assert steps.steps == 0  # the writer never woke for the news
            assert store.commits == 1  # the submit's append alone
            assert [(row[1], row[3]) for row in records_in_log(path)] == [("c-1", "pending_new")]
            # Not folded yet: answered from memory.
            assert rows_in_file(path) == {}
            assert await store.get("c-1") == order("c-1", "filled", oid="b-1")
            assert await store.find_by_order_id("b-1") == [order("c-1", "filled", oid="b-1")]
            await store.in_file()  # waits for the news too
            assert rows_in_file(path) == {"c-1": "filled"}
            assert fills_in_file(path) == ["f-1"]
            # The answer and the fill's report of one fold: one row in the history.
            history = [(e.event, e.order.status) for e in await store.history("c-1")]
            assert history == [("submit", "pending_new"), ("update", "filled")]
            assert store.folds == 1
            assert await store.get("c-1") == order("c-1", "filled", oid="b-1")


async def test_a_state_appended_after_newer_news_of_its_order_does_not_replace_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    gate = threading.Event()

    def fsync(fd: int) -> None:  # holds the writer's thread until the test lets it go
        gate.wait(10)

    async with open_sqlite_store(
        path, synchronous="full", fsync=fsync, fold_interval_s=NEVER
    ) as store:
        with trio.fail_after(10):
            gate.set()
            await store.record(order("c-1"), event="submit")
            gate.clear()
            async with trio.open_nursery() as nursery:
                # c-0's append holds the writer's thread: c-1's cancel request queues behind it.
                nursery.start_soon(functools.partial(store.record, order("c-0"), event="submit"))
                await trio.testing.wait_all_tasks_blocked()
                cancel = order("c-1", "pending_cancel", oid="b-1")
                nursery.start_soon(store.record, cancel)
                await trio.testing.wait_all_tasks_blocked()
                # The fill's news, newer than the queued cancel request, reaches the fold's
                # thread first: the request's append comes after it.
                store.record_soon(order("c-1", "filled", oid="b-1"))
                gate.set()
            await store.in_file()  # one fold takes all of it
        assert store.folds == 1
        assert rows_in_file(path) == {"c-0": "pending_new", "c-1": "filled"}
        # The two updates of one fold are one row: the newer.
        statuses = [e.order.status for e in await store.history("c-1")]
        assert statuses == ["pending_new", "filled"]
