"""The journal's window of recent orders: an order joins it once its latest state is in
the file, and leaving it never loses the way to a later state still in memory only."""

from __future__ import annotations

import time
from pathlib import Path

import trio
import trio.lowlevel

from tests.journal.harness import order, rows_in_file
from ult_actors.journal.sqlite import open_sqlite_store


def _wait_until_in_file(path: Path, coid: str) -> None:
    """Block the calling (trio) thread until the fold's thread has put ``coid`` in the file,
    so the fold's answer waits to be run by the loop (bounded)."""
    deadline = time.monotonic() + 10
    while coid not in rows_in_file(path):
        assert time.monotonic() < deadline, f"{coid} never folded"
        time.sleep(0.005)


async def test_an_order_out_of_the_window_is_found_by_order_id_at_its_state_not_in_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    # A fold each second at most: the later state below stays out of the file meanwhile.
    async with open_sqlite_store(path, cache_size=2, fold_interval_s=1.0) as store:
        await store.record(order("c-a", "accepted", oid="b-a"), event="submit")
        await store.in_file()  # c-a in the window, at its accepted state
        await store.record(order("c-b"), event="submit")
        await store.record(order("c-c"), event="submit")
        # The fold of c-b and c-c lands, and c-a is filled before the loop hears of it:
        # that fold's answer pushes c-a out of the window while its fill is in memory only.
        folds = store.folds
        _wait_until_in_file(path, "c-c")
        filled = order("c-a", "filled", oid="b-a")
        store.record_soon(filled)
        # The fold's thread posts its answer to the loop after its commit: under load it may
        # not have posted it yet when every task is blocked, so wait for the loop to run it.
        with trio.fail_after(10):
            while store.folds == folds:
                await trio.lowlevel.checkpoint()
        assert store.folds > folds  # the loop heard of that fold
        assert await store.get_by_order_id("b-a") == filled
        assert rows_in_file(path)["c-a"] == "accepted"  # the fill was in memory only
        assert await store.get("c-a") == filled
        await store.in_file()
        assert await store.get_by_order_id("b-a") == filled
