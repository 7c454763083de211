"""``synchronous = "normal"``: no fsync on a commit, the WAL fsynced shortly after, off the loop."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
import trio

from tests.journal.harness import order, rows_on_disk
from ult_actors.config import load_config
from ult_actors.errors import ConfigError, JournalUnavailable
from ult_actors.journal.sqlite import open_sqlite_store
from ult_actors.journal.wal_sync import WalSyncer


class Fsyncs:
    """Stands in for ``os.fsync``: counts, remembers the thread, lets a test wait for one."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.done = threading.Event()

    def __call__(self, fd: int) -> None:
        self.threads.append(threading.current_thread().name)
        self.done.set()


def wal_file(tmp_path: Path) -> Path:
    wal = tmp_path / "journal.db-wal"
    wal.write_bytes(b"frames")
    return wal


def test_a_commit_is_fsynced_on_the_syncers_own_thread(tmp_path: Path) -> None:
    fsyncs = Fsyncs()
    syncer = WalSyncer(wal_file(tmp_path), 0.001, fsync=fsyncs)
    syncer.start()
    try:
        syncer.committed()
        assert fsyncs.done.wait(10)
        assert fsyncs.threads == ["wal-sync:journal.db-wal"]
    finally:
        syncer.close()
    assert syncer.syncs == 1  # and nothing more at close: nothing committed since


def test_the_commits_of_one_interval_share_one_fsync(tmp_path: Path) -> None:
    fsyncs = Fsyncs()
    syncer = WalSyncer(wal_file(tmp_path), 3600.0, fsync=fsyncs)
    syncer.start()
    for _ in range(3):
        syncer.committed()
    syncer.close()  # cuts the interval short: what was committed is fsynced once
    assert fsyncs.threads == [threading.current_thread().name]
    assert syncer.syncs == 1


def test_nothing_committed_means_no_fsync(tmp_path: Path) -> None:
    fsyncs = Fsyncs()
    syncer = WalSyncer(wal_file(tmp_path), 0.001, fsync=fsyncs)
    syncer.start()
    assert syncer.sync_once() is False
    syncer.close()
    assert fsyncs.threads == [] and syncer.syncs == 0


def test_a_failed_fsync_is_kept_and_tried_again(tmp_path: Path) -> None:
    calls: list[int] = []

    def failing_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")

    syncer = WalSyncer(wal_file(tmp_path), 3600.0, fsync=failing_once)
    syncer.committed()
    assert syncer.sync_once() is False
    assert syncer.last_error is not None and "Input/output error" in syncer.last_error
    assert syncer.sync_once() is True  # still owed: done on the next round
    assert len(calls) == 2 and syncer.syncs == 1


async def test_the_journal_in_normal_mode_fsyncs_its_wal_after_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, synchronous="normal", sync_interval_s=0.001) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            assert rows_on_disk(path) == {"c-1": "pending_new"}
            while store.wal_syncs == 0:  # the syncer's thread, not ours: look until it did
                await trio.sleep(0.001)
        assert store.synchronous == "normal"


async def test_the_journal_in_full_mode_has_no_background_fsync(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, synchronous="full", sync_interval_s=0.001) as store:
        with trio.fail_after(10):
            for i in range(3):
                await store.record(order(f"c-{i}"), event="submit")
        assert store.wal_syncs == 0  # every commit fsynced itself


def test_normal_is_the_default_and_the_interval_is_bounded(tmp_path: Path) -> None:
    journal = load_config(None, env={}).journal
    assert (journal.synchronous, journal.sync_interval_ms) == ("normal", 50)
    shipped = load_config(Path(__file__).parents[2] / "config" / "ult.toml", env={}).journal
    assert (shipped.synchronous, shipped.sync_interval_ms) == ("normal", 50)
    for bad, rule in (("0", "must be >= 1"), ("60000", "must be <= 10000")):
        path = tmp_path / "ult.toml"
        path.write_text(f"[journal]\nsync_interval_ms = {bad}\n")
        with pytest.raises(ConfigError, match=f"journal.sync_interval_ms: {rule}"):
            load_config(path, env={})


async def test_a_failing_background_fsync_refuses_new_orders_until_one_succeeds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    broken = threading.Event()
    retried = threading.Event()
    attempts: list[int] = []

    def fsync(fd: int) -> None:
        attempts.append(fd)
        if len(attempts) > 1:
            retried.set()  # so the first attempt's failure is on record by now
        if broken.is_set():
            raise OSError(5, "Input/output error")

    broken.set()
    async with open_sqlite_store(
        path, sync_interval_s=0.001, probe_interval_s=0.01, fsync=fsync
    ) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")  # committed, not yet on disk
            await trio.to_thread.run_sync(retried.wait)  # its fsync failed (and again)
            with pytest.raises(JournalUnavailable, match="I/O error"):
                await store.record(order("c-2"), event="submit")
            assert store.unavailable == "I/O error"
            broken.clear()  # the disk answers again: the next fsync works, then a probe
            while store.unavailable is not None:
                await store.availability_changed()
            await store.record(order("c-3"), event="submit")
    assert rows_on_disk(path) == {"c-1": "pending_new", "c-3": "pending_new"}


def test_every_few_commits_the_fsync_is_a_checkpoint(tmp_path: Path) -> None:
    fsyncs = Fsyncs()
    checkpoints: list[str] = []
    syncer = WalSyncer(
        wal_file(tmp_path), 3600.0, fsync=fsyncs, checkpoint=lambda: checkpoints.append("c"),
        checkpoint_every=3,
    )  # fmt: skip
    syncer.committed()
    assert syncer.sync_once() is True
    assert (len(fsyncs.threads), checkpoints) == (1, [])  # one commit: a plain fsync
    for _ in range(2):
        syncer.committed()
    assert syncer.sync_once() is True  # the third commit since the last checkpoint
    assert (len(fsyncs.threads), checkpoints) == (1, ["c"])
    assert (syncer.syncs, syncer.checkpoints) == (2, 1)


def test_a_failed_checkpoint_is_kept_and_tried_again(tmp_path: Path) -> None:
    calls: list[int] = []

    def failing_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")

    syncer = WalSyncer(
        wal_file(tmp_path), 3600.0, fsync=Fsyncs(), checkpoint=failing_once, checkpoint_every=1
    )
    syncer.committed()
    assert syncer.sync_once() is False
    assert syncer.last_error is not None and "Input/output error" in syncer.last_error
    assert syncer.sync_once() is True  # still owed, still a checkpoint
    assert (len(calls), syncer.checkpoints, syncer.last_error) == (2, 1, None)


def orders_in_main_file(db: Path, tmp_path: Path) -> int:
    """Orders in the database file alone, as if its WAL were lost: what checkpoints copied."""
    copy = tmp_path / "main-only.db"
    shutil.copyfile(db, copy)
    with sqlite3.connect(copy) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0])


async def test_the_journals_checkpoints_run_on_the_syncers_thread(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, sync_interval_s=0.001) as store:
        with trio.fail_after(20):
            # Far under the writer's own bound (WRITER_CHECKPOINT_PAGES), over the syncer's count.
            for i in range(200):
                await store.record(order(f"c-{i}"), event="submit")
            while store.wal_checkpoints == 0:  # the syncer's thread: look until it did
                await trio.sleep(0.001)
        assert orders_in_main_file(path, tmp_path) > 0
