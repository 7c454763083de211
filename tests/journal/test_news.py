"""The brokers' news (``record_soon``, ``record_fill``) goes to the fold's thread, not to the
change log: it costs the order's path no append and no encode, and is in the file with the
next fold. Every test folds only when hurried (``in_file``), so each fold is one the test
asks for."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import msgspec
import trio
import trio.testing

from tests.journal.harness import fill, order, records_in_log, rows_in_file, rows_on_disk
from tests.journal.test_append import sqlite_threads
from tests.journal.test_full_disk import prepare
from ult_actors import segment_log
from ult_actors.journal.changelog import FillRow, decode_record
from ult_actors.journal.costs import JournalCostInputs
from ult_actors.journal.sqlite import _ROUND, open_sqlite_store
from ult_actors.messages import ReportQuery

#: No fold unless hurried.
NEVER = 3600.0


def fills_in_file(path: Path) -> list[str]:
    """The ids of the fills a cost report reads from the file, sorted. A fill the fold
    wrote twice (news folded as such and again as carried by a record's append, see
    ``_carries_news``) is read once: ``fills`` has no key (schema 11)."""
    read = JournalCostInputs(path, ReportQuery()).orders()
    return sorted(f.fill_id for _, fills in read for f in fills)


def fills_in_log(path: Path) -> list[FillRow]:
    """The fills the journal's change log holds (not yet folded into the file)."""
    fills: list[FillRow] = []
    for segment in segment_log.segments(path):
        for payload in segment_log.read_segment(segment):
            fills += decode_record(payload).fills
    return fills


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


async def test_an_order_s_first_record_folded_after_its_news_begins_its_history(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    gate = threading.Event()

    def fsync(fd: int) -> None:  # holds the writer's thread until the test lets it go
        gate.wait(10)

    async with open_sqlite_store(
        path, synchronous="full", fsync=fsync, fold_interval_s=NEVER
    ) as store:
        log = store._log
        assert log is not None
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                # c-0's append holds the writer's thread: c-2's first record (an order
                # found at the broker) queues behind it.
                nursery.start_soon(functools.partial(store.record, order("c-0"), event="submit"))
                await trio.testing.wait_all_tasks_blocked()
                found = order("c-2", "accepted", oid="b-2")
                nursery.start_soon(functools.partial(store.record, found, event="reconcile"))
                await trio.testing.wait_all_tasks_blocked()
                # Its fill's news is folded first, on its own: the file gets the order then.
                store.record_soon(order("c-2", "filled", oid="b-2"))
                await log.in_file()
                assert rows_in_file(path) == {"c-2": "filled"}
                gate.set()
            await store.in_file()  # the older record, in a later fold
        assert store.folds == 2
        assert rows_in_file(path) == {"c-0": "pending_new", "c-2": "filled"}
        history = [(e.event, e.order.status) for e in await store.history("c-2")]
        assert history == [("reconcile", "accepted"), ("update", "filled")]


async def test_news_a_fold_could_not_write_is_written_by_the_probe_that_succeeds(
    tmp_path: Path,
) -> None:
    disk = await prepare(tmp_path)
    async with open_sqlite_store(
        disk.path, max_pages=disk.cap, probe_interval_s=0.01, fold_interval_s=NEVER
    ) as store:
        with trio.fail_after(20):
            disk.fill()
            # News handed to the fold's thread while the journal is available, until a
            # fold fails (the pages' last free bytes take a few).
            for i in range(200):
                store.record_soon(order(f"c-{i}", "filled", oid=f"b-{i}"))
                store.record_fill(fill(f"f-{i}", coid=f"c-{i}"))
                await store.in_file()
                if store.unavailable is not None:
                    break
            assert store.unavailable == "disk full"
            last = f"c-{i}"
            assert await store.get(last) == order(last, "filled", oid=f"b-{i}")  # memory
            assert disk.status_of(last) == "absent"
            disk.free()
            while store.unavailable is not None:
                await store.availability_changed()
        assert disk.status_of(last) == "filled"
        assert f"f-{i}" in fills_in_file(disk.path)


async def test_a_record_naming_an_order_carries_the_news_not_folded_yet(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            store.record_soon(order("c-1", "accepted", oid="b-1"))
            store.record_fill(fill("f-0"))
            await store.record(order("c-2"), event="submit")  # names no other order
            # What a process opening the journal after a kill -9 finds: not the news.
            assert rows_on_disk(path) == {"c-1": "pending_new", "c-2": "pending_new"}
            # A replacement's intent: settled after a restart from the state of c-1,
            # which must not be older on disk than it was when the intent was made.
            intent = msgspec.structs.replace(order("c-1.r1"), replaces="c-1")
            await store.record(intent, event="replace")
            assert rows_on_disk(path) == {
                "c-1": "accepted", "c-2": "pending_new", "c-1.r1": "pending_new",
            }  # fmt: skip
            assert [row[1] for row in fills_in_log(path)] == ["f-0"]
            await store.record(order("c-3"), event="resend")  # carried once, not again
            assert len(records_in_log(path)) == 5  # 2 submits, the answer, the intent, the resend
            await store.in_file()
        assert rows_in_file(path) == {
            "c-1": "accepted", "c-2": "pending_new", "c-1.r1": "pending_new", "c-3": "pending_new",
        }  # fmt: skip
        assert fills_in_file(path) == ["f-0"]


async def test_a_record_carries_only_the_news_no_fold_has_written(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            store.record_soon(order("c-1", "accepted", oid="b-1"))
            store.record_fill(fill("f-0"))
            await store.in_file()  # this news is in the file: carried by no record
            store.record_soon(order("c-2", "accepted", oid="b-2"))
            store.record_fill(fill("f-1"))
            intent = msgspec.structs.replace(order("c-1.r1"), replaces="c-1")
            await store.record(intent, event="replace")
            store.record_soon(order("c-3", "accepted", oid="b-3"))
            await store.record(order("c-4"), event="resend")  # carries c-3's news alone
            logged = [(row[1], row[3]) for row in records_in_log(path)]
            assert logged == [
                ("c-1", "pending_new"), ("c-2", "accepted"), ("c-1.r1", "pending_new"),
                ("c-3", "accepted"), ("c-4", "pending_new"),
            ]  # fmt: skip
            assert [row[1] for row in fills_in_log(path)] == ["f-1"]
            await store.in_file()
        assert rows_in_file(path) == {
            "c-1": "accepted", "c-2": "accepted", "c-1.r1": "pending_new", "c-3": "accepted",
            "c-4": "pending_new",
        }  # fmt: skip
        assert fills_in_file(path) == ["f-0", "f-1"]


async def test_a_large_fold_encodes_and_writes_its_news_a_round_at_a_time(tmp_path: Path) -> None:
    """The fold's thread holds the GIL while it encodes the news and binds a statement's rows,
    and lets go of it in each statement: a large fold writes one round of records and fills
    (the records' events, then their orders, then the fills) before it encodes the next, so a
    request on the trio thread waits for one round's Python at most, not for the whole
    fold's."""
    path = tmp_path / "journal.db"
    orders = 3 * _ROUND
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        seen = sqlite_threads(store)
        with trio.fail_after(10):
            for i in range(orders):
                await store.record(order(f"c-{i}"), event="submit")
                store.record_soon(order(f"c-{i}", "filled", oid=f"b-{i}"))
                store.record_fill(fill(f"f-{i}", f"c-{i}"))
            await store.in_file()  # one fold: 2 * orders records, orders fills
    inserts = [
        (statement.split()[statement.split().index("INTO") + 1], statement.count("), (") + 1)
        for _, statement in seen
        if statement.startswith("INSERT")
    ]
    assert max(rows for _, rows in inserts) == _ROUND
    # Each round's events, then its orders (a submit and its fill's update: one row), then
    # its fills (the first three rounds': a fill an order, two records an order).
    assert inserts == [("events", _ROUND), ("orders", _ROUND // 2), ("fills", _ROUND)] * 3 + [
        ("events", _ROUND),
        ("orders", _ROUND // 2),
    ] * 3
    assert rows_in_file(path) == {f"c-{i}": "filled" for i in range(orders)}
    assert len(fills_in_file(path)) == orders
