"""The journal's change log: a record survives a ``kill -9`` before any fold, replays are
idempotent, a record cut short ends the replay.

Each crash is a real one: a child process records into a real journal file and is
killed with SIGKILL once it says what it recorded; the test then opens the file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec

from tests.journal.harness import fill, order, rows_in_file
from ult_actors import segment_log
from ult_actors.journal import changelog
from ult_actors.journal.changelog import LogRecord, fill_row, log_row
from ult_actors.journal.costs import JournalCostInputs
from ult_actors.journal.sqlite import open_sqlite_store
from ult_actors.messages import ReportQuery

ROOT = Path(__file__).resolve().parents[2]

#: Records two orders (and a fill), optionally waits for the fold, says so, then waits
#: to be killed. The fold runs only when hurried (an hour's interval otherwise).
_CHILD = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from tests.journal.harness import fill, order
    from ult_actors.journal.sqlite import open_sqlite_store

    async def main(path: str, fold_first: bool) -> None:
        async with open_sqlite_store(Path(path), fold_interval_s=3600) as store:
            await store.record(order("c-1"), event="submit")
            await store.record(order("c-1", "filled", oid="b-1"))
            store.record_fill(fill("f-1"))  # news: to the fold's thread, not the log
            await store.record(order("c-2"), event="submit")
            if fold_first:
                await store.in_file()
            print("recorded", flush=True)
            await trio.sleep_forever()

    trio.run(main, sys.argv[1], sys.argv[2] == "fold")
    """
)


def record_then_kill9(path: Path, *, fold_first: bool) -> None:
    """Run the child on ``path`` and SIGKILL it once it has recorded."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), "fold" if fold_first else "log"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "recorded"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def table_counts(path: Path) -> tuple[int, int, int]:
    """Rows in ``events``, ``orders`` and ``fills`` of the file."""
    conn = sqlite3.connect(path)
    try:
        return tuple(  # type: ignore[return-value]
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("events", "orders", "fills")
        )
    finally:
        conn.close()


async def test_a_record_survives_a_kill9_before_any_fold(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    record_then_kill9(path, fold_first=False)
    assert rows_in_file(path) == {}  # nothing folded: the log alone has them
    assert segment_log.segments(path)
    async with open_sqlite_store(path) as store:
        assert (await store.get("c-1")) == order("c-1", "filled", oid="b-1")
        assert (await store.get("c-2")) == order("c-2")
        history = [(e.seq, e.event, e.order.status) for e in await store.history("c-1")]
        assert history == [(1, "submit", "pending_new"), (2, "update", "filled")]
        await store.record(order("c-3"), event="submit")
        assert [e.seq for e in await store.history("c-3")] == [4]  # after the replayed ones
    assert not segment_log.segments(path)  # replayed, then gone on a clean close
    # The fill was news, never in the log: killed before its fold, it is lost (the broker
    # still has it for reconciliation); every record made durable is there.
    assert table_counts(path) == (4, 3, 0)


async def test_a_log_replayed_after_its_fold_committed_leaves_each_row_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    # Folded, then killed before the segment's delete: the file and the log both hold it all.
    record_then_kill9(path, fold_first=True)
    assert rows_in_file(path) == {"c-1": "filled", "c-2": "pending_new"}
    assert segment_log.segments(path)
    folded_once = table_counts(path)
    for _ in range(2):  # a replay, and one more over a file that has everything
        async with open_sqlite_store(path):
            pass
        assert table_counts(path) == folded_once == (3, 2, 1)


async def test_a_logged_state_older_than_the_files_does_not_replace_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        await store.record(order("c-1"), event="submit")
        await store.record(order("c-1", "filled", oid="b-1"))
    # A segment left over with the order's first record only (seq 1): older than the file's.
    log = segment_log.SegmentLog(path)
    record = msgspec.msgpack.encode(LogRecord([log_row(1, "submit", 0, order("c-1"))], []))
    log.append(segment_log.framed(record))
    log.close()
    async with open_sqlite_store(path) as store:
        assert (await store.get("c-1")) == order("c-1", "filled", oid="b-1")
    assert rows_in_file(path) == {"c-1": "filled"}
    assert table_counts(path)[0] == 2


async def test_a_replay_of_many_orders_writes_each_row_once_and_the_newest_state(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path):
        pass  # the file, empty
    # 100 orders (a fold writes many rows per statement: 64, 32, 4 of them here), each
    # submitted then filled, with one fill reported twice and an older state after a newer.
    rows = []
    for i in range(100):
        rows.append(log_row(2 * i + 1, "submit", 0, order(f"c-{i}")))
        rows.append(log_row(2 * i + 2, "update", 0, order(f"c-{i}", "filled", oid=f"b-{i}")))
    rows.append(log_row(1, "submit", 0, order("c-0")))
    fills = [fill_row(fill(f"f-{i}", f"c-{i}")) for i in range(100)]
    fills.append(fill_row(fill("f-7", "c-7")))
    log = segment_log.SegmentLog(path)
    log.append(segment_log.framed(msgspec.msgpack.encode(LogRecord(rows, fills))))
    log.close()
    async with open_sqlite_store(path) as store:
        assert (await store.get("c-0")) == order("c-0", "filled", oid="b-0")
        assert len(await store.history("c-99")) == 2
    assert rows_in_file(path) == {f"c-{i}": "filled" for i in range(100)}
    assert table_counts(path)[:2] == (200, 100)
    # ``fills`` has no key (schema 11): what reads it, the cost report, keeps the fill
    # reported twice once.
    read = JournalCostInputs(path, ReportQuery()).orders()
    assert {o.client_order_id: [f.fill_id for f in fs] for o, fs in read} == {
        f"c-{i}": [f"f-{i}"] for i in range(100)
    }


async def test_a_record_cut_short_ends_the_replay(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    record_then_kill9(path, fold_first=False)
    [segment] = segment_log.segments(path)
    # The disk filled during the last append (c-2's): its last bytes
    # never landed on the segment's zeros. Its caller was never answered, so the
    # replay ends before it.
    data = segment.read_bytes()
    end = sum(len(segment_log.framed(record)) for record in segment_log.read_segment(segment))
    segment.write_bytes(data[: end - 5] + bytes(len(data) - end + 5))
    async with open_sqlite_store(path) as store:
        assert (await store.get("c-1")) == order("c-1", "filled", oid="b-1")
        assert (await store.get("c-2")) is None
        await store.record(order("c-2"), event="submit")  # the id is free: it never left
        store.record_fill(fill("f-1"))
    assert rows_in_file(path) == {"c-1": "filled", "c-2": "pending_new"}
    assert table_counts(path) == (3, 2, 1)


async def test_an_orders_record_is_its_head_then_the_body_the_file_gets(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    times = iter(range(1_700_000_000_000_000_000, 1_800_000_000_000_000_000))
    async with open_sqlite_store(path, now_ns=lambda: next(times), fold_interval_s=3600) as store:
        filled = order("c-1", "filled", oid="b-1")
        await store.record(order("c-1"), event="submit")
        await store.record(filled)
        [_, payload] = list(segment_log.read(path))
        row = log_row(2, "update", 1_700_000_000_000_000_001, filled)
        body = row[5]
        # One encode: the record ends in the very bytes that become the order's body.
        assert payload.endswith(body)
        assert len(payload) < len(body) + 30
        assert changelog.decode_record(payload) == LogRecord([row], [])
    assert rows_in_file(path) == {"c-1": "filled"}


async def test_a_log_of_lone_records_and_batch_records_replays_both(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    record_then_kill9(path, fold_first=False)  # its orders' records, each alone
    [lone] = segment_log.segments(path)
    assert {payload[:1] for payload in segment_log.read_segment(lone)} == {b"\x94"}
    # And a segment in the batch form (an array of two: rows, fills), as an earlier
    # version wrote every record and this one writes a batch of several.
    batch = segment_log.SegmentLog(path)
    rows = [log_row(10, "submit", 0, order("c-3")), log_row(11, "submit", 0, order("c-4"))]
    batch.append(segment_log.framed(msgspec.msgpack.encode(LogRecord(rows, []))))
    batch.close()
    async with open_sqlite_store(path) as store:
        assert (await store.get("c-1")) == order("c-1", "filled", oid="b-1")
    assert rows_in_file(path) == {
        "c-1": "filled", "c-2": "pending_new", "c-3": "pending_new", "c-4": "pending_new",
    }  # fmt: skip
    assert table_counts(path) == (5, 4, 0)  # the fill was news: not in the log
