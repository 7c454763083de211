"""Finding orders by broker order id while the journal's fold moves them from memory into the
file: an order is found whichever side of the move the lookup reads it on."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.journal.harness import order
from ult_actors.journal.sqlite import open_sqlite_store


async def test_an_order_folded_into_the_file_during_the_lookup_is_still_found(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        await store.record(order("c-0", "accepted", oid="b-0"), event="accepted")
        await store.in_file()
        # Another connection holds the file's write lock: the next fold cannot land yet,
        # so c-1 stays in memory only.
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        await store.record(order("c-1", "accepted", oid="b-1"), event="accepted")
        run_sync = trio.to_thread.run_sync
        landed = False

        async def read_then_let_the_fold_land(
            fn: Callable[..., Any], *args: Any, **kwargs: Any
        ) -> Any:
            # The lookup's read of the file misses c-1; the fold then moves it out of memory
            # before the lookup looks there.
            nonlocal landed
            got = await run_sync(fn, *args, **kwargs)
            if not landed and args and args[0] is store._rconn:
                landed = True
                holder.execute("ROLLBACK")
                await store.in_file()
            return got

        with trio.fail_after(30), pytest.MonkeyPatch.context() as patched:
            patched.setattr(trio.to_thread, "run_sync", read_then_let_the_fold_land)
            found = await store.find_by_order_id("b-1")
        assert landed
        holder.close()
        assert [o.client_order_id for o in found] == ["c-1"]
        assert [o.client_order_id for o in await store.find_by_order_id("b-0")] == ["c-0"]
