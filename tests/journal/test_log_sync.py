"""Durability of the change log: ``normal`` fsyncs it shortly after an append, off the loop;
``full`` fsyncs it before ``record`` returns, once per batch."""

from __future__ import annotations

import functools
import os
import stat
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.journal.harness import order, rows_on_disk
from ult_actors.config import load_config
from ult_actors.errors import ConfigError, JournalUnavailable
from ult_actors.journal.fsync_route import FsyncRoute
from ult_actors.journal.log_sync import LogSyncer
from ult_actors.journal.sqlite import open_sqlite_store


def is_directory(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


class Fsyncs:
    """Stands in for ``os.fdatasync``: remembers the thread of each file's fsync and each
    directory fsynced, lets a test wait for a file's."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.directories: list[str] = []
        self.done = threading.Event()

    def __call__(self, fd: int) -> None:
        if is_directory(fd):
            self.directories.append(os.readlink(f"/proc/self/fd/{fd}"))
            return
        self.threads.append(threading.current_thread().name)
        self.done.set()


def segment(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db.log.1"
    path.write_bytes(b"records")
    return path


def test_an_append_is_fsynced_on_the_syncers_own_thread(tmp_path: Path) -> None:
    fsyncs = Fsyncs()
    syncer = LogSyncer(0.001, fsync=fsyncs, name="log-sync:journal.db")
    syncer.start()
    try:
        syncer.appended(segment(tmp_path))
        assert fsyncs.done.wait(10)
        assert fsyncs.threads == ["log-sync:journal.db"]
    finally:
        syncer.close()
    assert syncer.syncs == 1  # and nothing more at close: nothing committed since


def test_the_appends_of_one_interval_share_one_fsync(tmp_path: Path) -> None:
    fsyncs = Fsyncs()
    syncer = LogSyncer(3600.0, fsync=fsyncs)
    syncer.start()
    for _ in range(3):
        syncer.appended(segment(tmp_path))
    syncer.close()  # cuts the interval short: what was appended is fsynced once
    assert fsyncs.threads == [threading.current_thread().name]
    assert syncer.syncs == 1


def test_nothing_appended_means_no_fsync(tmp_path: Path) -> None:
    fsyncs = Fsyncs()
    syncer = LogSyncer(0.001, fsync=fsyncs)
    syncer.start()
    assert syncer.sync_once() is False
    syncer.close()
    assert fsyncs.threads == [] and syncer.syncs == 0


def test_a_failed_fsync_is_kept_and_tried_again(tmp_path: Path) -> None:
    calls: list[int] = []

    def failing_once(fd: int) -> None:
        if is_directory(fd):
            return
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")

    syncer = LogSyncer(3600.0, fsync=failing_once)
    syncer.appended(segment(tmp_path))
    assert syncer.sync_once() is False
    assert syncer.last_error is not None and "Input/output error" in syncer.last_error
    assert syncer.sync_once() is True  # still owed: done on the next round
    assert len(calls) == 2 and syncer.syncs == 1


def test_a_segment_gone_before_its_fsync_was_folded_and_is_no_failure(tmp_path: Path) -> None:
    fsyncs = Fsyncs()
    syncer = LogSyncer(3600.0, fsync=fsyncs)
    syncer.appended(tmp_path / "journal.db.log.1")  # folded into the file and deleted
    assert syncer.sync_once() is True
    assert (fsyncs.threads, syncer.last_error) == ([], None)


async def test_the_journal_in_normal_mode_fsyncs_its_log_after_an_append(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    fsyncs = Fsyncs()
    async with open_sqlite_store(
        path, synchronous="normal", sync_interval_s=0.001, fsync=fsyncs
    ) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            # Returned with no fsync of its own: the append is enough. (The syncer's may
            # have come already: its interval is 1 ms.)
            assert set(fsyncs.threads) <= {"log-sync:journal.db"}
            assert rows_on_disk(path) == {"c-1": "pending_new"}
            while store.log_syncs == 0:  # the syncer's thread, not ours: look until it did
                await trio.sleep(0.001)
        assert fsyncs.threads[0] == "log-sync:journal.db"


class GatedFsync:
    """Stands in for ``os.fdatasync``: blocks until the test opens the gate; counts the
    files' fsyncs and the directory's. The journal must fsync on its writer's thread
    (``FsyncRoute(use_loop=False)``): the test's loop opens the gate."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.gate = threading.Event()
        self.calls = 0
        self.directory_calls = 0

    def __call__(self, fd: int) -> None:
        if is_directory(fd):
            self.directory_calls += 1
            return
        self.calls += 1
        self.started.set()
        assert self.gate.wait(10)


async def test_in_full_mode_record_returns_only_after_the_logs_fsync(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    fsync = GatedFsync()
    async with open_sqlite_store(
        path, synchronous="full", fsync=fsync, fsync_route=FsyncRoute(use_loop=False)
    ) as store:
        recorded = trio.Event()

        async def submit() -> None:
            await store.record(order("c-1"), event="submit")
            recorded.set()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit)
                await trio.to_thread.run_sync(fsync.started.wait)
                await trio.testing.wait_all_tasks_blocked()
                assert not recorded.is_set()  # appended, its fsync not done: no answer yet
                fsync.gate.set()
            assert recorded.is_set()
            assert rows_on_disk(path) == {"c-1": "pending_new"}
        assert store.log_syncs == 0  # no background fsync: every append fsynced itself


async def test_in_full_mode_the_submits_made_during_an_fsync_share_the_next(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    fsync = GatedFsync()
    async with open_sqlite_store(
        path, synchronous="full", fsync=fsync, fsync_route=FsyncRoute(use_loop=False)
    ) as store:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(store.record, order("first"), event="submit"))
                await trio.to_thread.run_sync(fsync.started.wait)
                for i in range(20):  # recorded while the first fsync runs
                    nursery.start_soon(
                        functools.partial(store.record, order(f"c-{i}"), event="submit")
                    )
                await trio.testing.wait_all_tasks_blocked()
                fsync.gate.set()
        assert (store.records, store.commits, fsync.calls) == (21, 2, 2)
        assert fsync.directory_calls == 0  # the segment's name was fsynced when it was made
        assert len(rows_on_disk(path)) == 21


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
            await store.record(order("c-1"), event="submit")  # appended, not yet fsynced
            await trio.to_thread.run_sync(retried.wait)  # its fsync failed (and again)
            with pytest.raises(JournalUnavailable, match="I/O error"):
                await store.record(order("c-2"), event="submit")
            assert store.unavailable == "I/O error"
            broken.clear()  # the disk answers again: the next fsync works, then a probe
            while store.unavailable is not None:
                await store.availability_changed()
            await store.record(order("c-3"), event="submit")
    assert rows_on_disk(path) == {"c-1": "pending_new", "c-3": "pending_new"}


def open_descriptors(path: Path) -> int:
    """How many of this process's descriptors are open on ``path``."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


def test_a_segment_appended_to_is_opened_once_not_every_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: os.PathLike[str] | str, flags: int, *args: int) -> int:
        opened.append(os.fspath(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", counting_open)
    fsyncs = Fsyncs()
    syncer = LogSyncer(3600.0, fsync=fsyncs)  # rounds run here, by ``sync_once``
    first, second = segment(tmp_path), tmp_path / "journal.db.log.2"
    second.write_bytes(b"records")
    for _ in range(3):  # three rounds of appends to one segment: one open
        syncer.appended(first)
        assert syncer.sync_once() is True
    assert (opened, len(fsyncs.threads)) == ([str(first)], 3)
    syncer.appended(second)  # rotated: the first segment is done with
    assert syncer.sync_once() is True
    assert (open_descriptors(first), open_descriptors(second)) == (0, 1)
    syncer.close()
    assert open_descriptors(second) == 0
    assert syncer.syncs == 4
