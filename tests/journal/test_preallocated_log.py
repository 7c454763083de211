"""The journal's change log in segments made at full size: a crash's leftovers and a disk
with no room for the next segment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec
import pytest
import trio

from tests.full_disk import FullLogDisk
from tests.journal.harness import order, rows_in_file
from ult_actors import segment_log
from ult_actors.errors import JournalUnavailable
from ult_actors.journal.changelog import LogRecord, log_row
from ult_actors.journal.sqlite import open_sqlite_store


async def test_a_crash_that_left_the_next_segment_made_loses_nothing_and_leaves_it_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path):
        pass  # the file, empty
    # What a kill -9 leaves: the open segment, its records then zeros, and the next
    # segment already made (all zeros) because the open one was past half full.
    log = segment_log.SegmentLog(path, segment_bytes=8192)
    for seq, coid in ((1, "c-1"), (2, "c-2")):
        record = LogRecord([log_row(seq, "submit", 0, order(coid))], [])
        log.append(segment_log.framed(msgspec.msgpack.encode(record)))
    log.close()  # as a kill -9 leaves it: nothing deleted
    os.close(segment_log.create_segment(Path(f"{path}.log.2"), 8192))
    assert len(segment_log.segments(path)) == 2
    async with open_sqlite_store(path) as store:
        assert {o.client_order_id for o in await store.list_orders()} == {"c-1", "c-2"}
        await store.record(order("c-3"), event="submit")
    assert rows_in_file(path) == {"c-1": "pending_new", "c-2": "pending_new", "c-3": "pending_new"}
    assert segment_log.segments(path) == []


@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_a_full_disk_takes_records_in_the_room_made_then_refuses_submits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synchronous: Literal["normal", "full"]
) -> None:
    path = tmp_path / "journal.db"
    disk = FullLogDisk(monkeypatch, "journal.db.log.")
    async with open_sqlite_store(path, synchronous=synchronous, probe_interval_s=0.01) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            disk.full = True
            await store.record(order("c-2"), event="submit")  # the open segment has room
            assert store._log is not None
            store._log.segment_bytes = 1  # the next append opens a new segment
            with pytest.raises(JournalUnavailable, match="disk full"):
                await store.record(order("c-3"), event="submit")
            assert store.unavailable == "disk full"
            assert await store.get("c-3") is None  # refused: it never left
            disk.full = False
            while store.unavailable is not None:
                await store.availability_changed()
            await store.record(order("c-4"), event="submit")
    async with open_sqlite_store(path) as store:
        assert {o.client_order_id for o in await store.list_orders()} == {"c-1", "c-2", "c-4"}
