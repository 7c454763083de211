"""A record whose answer follows at once (``record_now(..., answer_follows=True)``, then
``record_answer``): the log keeps the record as made, durable before the order leaves, and
the file gets it once, in its answered state: one ``events`` row and one body where the
record and its answer made two. Every test folds only when hurried (``in_file``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import trio
import trio.testing

from tests.journal.harness import order, records_in_log, rows_in_file, rows_on_disk
from ult_actors import segment_log
from ult_actors.journal import changelog
from ult_actors.journal.changelog import LogRecord, log_row
from ult_actors.journal.sqlite import SqliteStore, open_sqlite_store

#: No fold unless hurried.
NEVER = 3600.0


async def _history(store: SqliteStore, coid: str) -> list[tuple[int, str, str]]:
    return [(e.seq, e.event, e.order.status) for e in await store.history(coid)]


async def _appended_with_its_answer(store: SqliteStore) -> None:
    await trio.testing.wait_all_tasks_blocked()  # the writer idle: the record appends here
    assert store.record_now(order("c-1"), event="submit", answer_follows=True) is None
    store.record_answer(order("c-1", "filled", oid="b-1"))


async def test_the_file_gets_the_record_once_in_its_answered_state(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            await _appended_with_its_answer(store)
            # Durable as made (a kill -9 now replays it), answered from memory.
            assert [(row[1], row[3]) for row in records_in_log(path)] == [("c-1", "pending_new")]
            assert rows_on_disk(path) == {"c-1": "pending_new"}
            assert await store.get("c-1") == order("c-1", "filled", oid="b-1")
            assert await store.find_by_order_id("b-1") == [order("c-1", "filled", oid="b-1")]
            await store.in_file()
            assert await _history(store, "c-1") == [(1, "submit", "filled")]
            assert rows_in_file(path) == {"c-1": "filled"}
            # Later news of the order comes after it, as ever.
            store.record_soon(order("c-1", "canceled", oid="b-1"))
            await store.in_file()
            assert [h[1:] for h in await _history(store, "c-1")] == [
                ("submit", "filled"),
                ("update", "canceled"),
            ]


async def test_a_replay_of_the_record_as_made_leaves_its_answered_row(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    kept = tmp_path / "kept"
    kept.mkdir()
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            await _appended_with_its_answer(store)
            await store.in_file()
            # What a kill -9 now would leave: the file folded, the log not deleted yet.
            segments = [shutil.copy(s, kept / s.name) for s in segment_log.segments(path)]
            assert segments
    for segment in segments:
        shutil.copy(segment, tmp_path / Path(segment).name)
    assert [(row[1], row[3]) for row in records_in_log(path)] == [("c-1", "pending_new")]
    assert rows_on_disk(path) == {"c-1": "filled"}
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            assert await store.get("c-1") == order("c-1", "filled", oid="b-1")
            assert await _history(store, "c-1") == [(1, "submit", "filled")]


async def test_a_record_left_without_its_answer_reaches_the_file_as_made(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
            assert store.record_now(order("c-1"), event="submit", answer_follows=True) is None
            # A caller's bug: the next record comes first. The first is not lost for it.
            store.record_soon(order("c-2", "accepted", oid="b-2"))
            await store.in_file()
            assert rows_in_file(path) == {"c-1": "pending_new", "c-2": "accepted"}
            assert await _history(store, "c-1") == [(1, "submit", "pending_new")]


async def test_the_record_s_own_order_as_its_answer_is_the_record_as_made(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
            sent = order("c-1")
            assert store.record_now(sent, event="submit", answer_follows=True) is None
            store.record_answer(sent)  # the send failed: no answer came
            await store.in_file()
            assert await _history(store, "c-1") == [(1, "submit", "pending_new")]
            assert await store.get("c-1") == sent


async def test_an_answered_record_is_logged_as_the_same_bytes_as_a_folded_one(
    tmp_path: Path,
) -> None:
    # The answered record is encoded in one piece (its head and body together); a record
    # folded as it is, head then body. The log holds the same bytes either way.
    times = iter(range(1_700_000_000_000_000_000, 1_800_000_000_000_000_000))
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, now_ns=lambda: next(times), fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
            made = order("c-1")
            assert store.record_now(made, event="submit", answer_follows=True) is None
            store.record_answer(order("c-1", "filled", oid="b-1"))
            await store.record(order("c-2"), event="submit")  # folded as it is
            [answered, folded] = list(segment_log.read(path))
            row = log_row(1, "submit", 1_700_000_000_000_000_000, made)
            assert answered[:1] == folded[:1] == b"\x94"
            assert answered.endswith(row[5])
            assert changelog.decode_record(answered) == LogRecord([row], [])
            same_head = log_row(2, "submit", 1_700_000_000_000_000_001, order("c-2"))
            assert changelog.decode_record(folded) == LogRecord([same_head], [])
            assert len(answered) == len(folded)  # both ids as long, both heads alike


async def test_an_answer_takes_its_record_s_place_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            await store.record(order("c-0"), event="submit")
            await trio.testing.wait_all_tasks_blocked()
            assert store.record_now(order("c-1"), event="submit", answer_follows=True) is None
            store.record_answer(order("c-1", "accepted", oid="b-1"))
            assert await store.non_terminal() == [order("c-0"), order("c-1", "accepted", oid="b-1")]
            assert store.record_now(order("c-2"), event="submit", answer_follows=True) is None
            store.record_answer(order("c-2", "filled", oid="b-2"))
            assert [o.client_order_id for o in await store.non_terminal()] == ["c-0", "c-1"]
            assert await store.find_by_order_id("b-2") == [order("c-2", "filled", oid="b-2")]
            await store.in_file()
            # Folded: each order's answered state, from memory and from the file.
            assert await store.get("c-2") == order("c-2", "filled", oid="b-2")
            assert rows_in_file(path) == {"c-0": "pending_new", "c-1": "accepted", "c-2": "filled"}
            assert await _history(store, "c-1") == [(2, "submit", "accepted")]


async def test_a_fold_whose_first_round_of_orders_is_all_newer_later_writes_every_order(
    tmp_path: Path,
) -> None:
    # Every order's submit, then every order's update, all in one fold: the fold's first
    # round of records (32) holds only submits whose orders' rows the later rounds replace,
    # so that round has events to write and no order row.
    path = tmp_path / "journal.db"
    coids = [f"c-{i}" for i in range(40)]
    async with open_sqlite_store(path, fold_interval_s=NEVER) as store:
        with trio.fail_after(10):
            for coid in coids:
                await store.record(order(coid), event="submit")
            for i, coid in enumerate(coids):
                await store.record(order(coid, "accepted", oid=f"b-{i}"))
            await store.in_file()
            assert store.unavailable is None
    assert rows_in_file(path) == dict.fromkeys(coids, "accepted")
