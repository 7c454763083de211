"""The brokers' news is journaled in the background: seen at once, committed soon, folded."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import pytest
import trio
import trio.testing

from tests.journal.harness import order, rows_on_disk
from ult_actors.errors import Internal
from ult_actors.journal.sqlite import open_sqlite_store

Sync = Literal["full", "normal"]


def event_rows(path: Path, coid: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        query = "SELECT event, status FROM events WHERE client_order_id = ? ORDER BY seq"
        return [(e, s) for e, s in conn.execute(query, (coid,))]
    finally:
        conn.close()


async def test_a_record_made_soon_is_seen_at_once_and_committed_with_the_next_batch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        store.record_soon(order("c-1", "filled", oid="b-1"))  # returns without a checkpoint
        got = await store.get("c-1")
        assert got is not None and got.status == "filled"
        assert rows_on_disk(path) == {"c-1": "pending_new"}  # not committed yet
        with trio.fail_after(10):  # batches commit in turn: once this one is, so is that
            await store.record(order("c-2"), event="submit")
        assert rows_on_disk(path) == {"c-1": "filled", "c-2": "pending_new"}


async def test_accepted_and_filled_in_one_batch_are_one_row_each_in_orders_and_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            store.record_soon(order("c-1", "accepted", oid="b-1"))
            store.record_soon(order("c-2", "accepted", oid="b-2"))
            store.record_soon(order("c-1", "filled", oid="b-1"))
            await store.record(order("c-3"), event="submit")
        history = [(e.event, e.order.status) for e in await store.history("c-1")]
    assert history == [("submit", "pending_new"), ("update", "filled")]  # the latest state wins
    assert event_rows(path, "c-2") == [("update", "accepted")]
    assert rows_on_disk(path) == {"c-1": "filled", "c-2": "accepted", "c-3": "pending_new"}


async def test_closing_commits_what_was_recorded_soon(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        store.record_soon(order("c-1", "filled", oid="b-1"))
    assert rows_on_disk(path) == {"c-1": "filled"}


async def test_a_record_an_order_needs_before_it_leaves_is_never_made_soon(
    tmp_path: Path,
) -> None:
    async with open_sqlite_store(tmp_path / "journal.db") as store:
        for event in ("submit", "resend"):
            with pytest.raises(Internal, match="must be durable before the order leaves"):
                store.record_soon(order("c-1"), event=event)
        assert await store.get("c-1") is None


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_the_news_shares_the_next_submits_commit(tmp_path: Path, synchronous: Sync) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, synchronous=synchronous, sync_interval_s=60.0) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            store.record_soon(order("c-1", "filled", oid="b-1"))
            await trio.testing.wait_all_tasks_blocked()  # the writer had its chance
            assert rows_on_disk(path) == {"c-1": "pending_new"}  # waiting for company
            await store.record(order("c-2"), event="submit")
        assert rows_on_disk(path) == {"c-1": "filled", "c-2": "pending_new"}
        assert store.commits == 2  # one commit (and fsync) per submit; the fill rode along


async def test_news_alone_is_committed_within_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, sync_interval_s=0.01) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            store.record_soon(order("c-1", "filled", oid="b-1"))
            while rows_on_disk(path) != {"c-1": "filled"}:
                await trio.sleep(0.005)


async def test_an_order_known_only_from_news_not_yet_committed_is_listed_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, sync_interval_s=60.0) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            await store.record(order("c-2", broker="alpaca"), event="submit")
        # An order the service never sent (a position closed by the broker itself,
        # an adopted one): news only, no submit record to commit it with.
        store.record_soon(order("close-1", "filled", oid="b-9"))
        store.record_soon(order("c-1", "accepted", oid="b-1"))
        assert rows_on_disk(path) == {"c-1": "pending_new", "c-2": "pending_new"}
        listed = [(o.client_order_id, o.status) for o in await store.list_orders()]
        assert listed == [("c-1", "accepted"), ("close-1", "filled"), ("c-2", "pending_new")]
        paper = await store.list_orders(broker="paper", limit=2)
        assert [o.client_order_id for o in paper] == ["c-1", "close-1"]
