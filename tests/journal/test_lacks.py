"""``lacks``: whether the journal surely has no record of a client order id, asked without a
read by the router and again by the broker's step, and never wrong after a record."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.journal.harness import order
from ult_actors.journal.sqlite import open_sqlite_store


async def test_an_id_never_recorded_is_lacked_until_its_record(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "journal.db", fold_interval_s=3600) as store:
        with trio.fail_after(10):
            coid = "c-1"
            assert store.lacks(coid)
            assert store.lacks(coid)  # asked again, nothing recorded between
            await store.record(order(coid), event="submit")
            assert not store.lacks(coid)
            assert not store.lacks("".join(["c-", "1"]))  # an equal string, not the same


async def test_a_record_of_another_order_between_two_asks_changes_nothing(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "journal.db", fold_interval_s=3600) as store:
        with trio.fail_after(10):
            assert store.lacks("c-1")
            await store.record(order("c-2"), event="submit")
            assert store.lacks("c-1")
            assert not store.lacks("c-2")
            store.record_soon(order("c-1", "accepted", oid="b-1"))
            assert not store.lacks("c-1")


async def test_an_id_recorded_in_the_file_is_not_lacked_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        assert store.lacks("c-1")
        await store.record(order("c-1"), event="submit")
        await store.in_file()
        assert not store.lacks("c-1")
    async with open_sqlite_store(path, cache_size=1) as store:
        # Out of memory's window (one order kept): the id filter answers.
        await store.record(order("c-2"), event="submit")
        await store.record(order("c-3"), event="submit")
        await store.in_file()
        assert not store.lacks("c-1")
        assert store.lacks("c-4")
