"""With ``synchronous = "full"`` a lone submit's fdatasync runs while its order goes to the
broker: the record is in the log (a ``kill -9`` keeps it) before the order leaves, and the
ack waits for the fdatasync; one that fails answers the submit with ``JournalUnavailable``
(the order was sent) and is an outage until a probe folds the log into the file."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.journal.harness import (
    order,
    paper_service,
    records_in_log,
    rows_on_disk,
    short_socket_path,
)
from ult_actors.client import AsyncClient, JournalUnavailable
from ult_actors.journal.fsync_ahead import (
    FSYNC_SPIN_NS,
    FsyncAhead,
    UringFsync,
    open_fsync_ahead,
)
from ult_actors.journal.fsync_route import FsyncRoute
from ult_actors.journal.sqlite import SqliteStore, open_sqlite_store, sqlite_store_opener


def _by_the_ring() -> FsyncRoute:
    """A route that never fdatasyncs a lone record on the trio thread: it goes ahead
    through the ring (the tests of that path; the loop's own is tested below)."""
    return FsyncRoute(use_loop=False)


class GatedFsyncAhead:
    """Stands in for the io_uring fdatasync: begun at once, done when the test says."""

    def __init__(self) -> None:
        self.begun: list[int] = []
        self.waited = trio.Event()  # someone waits for the one begun
        self.gate = trio.Event()
        self.error: OSError | None = None
        self.running = False

    def start(self, fd: int) -> None:
        assert not self.running
        self.begun.append(fd)
        self.running = True

    def spin(self, limit_ns: int) -> bool:
        return not self.running  # done only when the test says: never within a spin

    def ended(self) -> bool:
        return not self.running  # ended only by ``done``, once the test says

    async def done(self) -> None:
        self.waited.set()
        await self.gate.wait()
        self.running = False
        self.waited = trio.Event()
        self.gate = trio.Event()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        pass


@pytest.fixture
def sock() -> Iterator[Path]:
    with short_socket_path() as path:
        yield path


async def test_with_full_the_order_leaves_before_its_fsync_and_the_ack_waits_for_it(
    tmp_path: Path, sock: Path
) -> None:
    path = tmp_path / "journal.db"
    ahead = GatedFsyncAhead()
    fsynced: list[int] = []  # the fsyncs a record waits for before it returns
    opener = sqlite_store_opener(
        path,
        synchronous="full",
        fsync=fsynced.append,
        fsync_ahead=ahead,
        fsync_route=_by_the_ring(),
    )
    async with paper_service(tmp_path, sock, opener) as svc, AsyncClient(sock) as client:
        store = await svc.journal.get()
        assert isinstance(store, SqliteStore)
        acked: list[str] = []

        async def submit() -> None:
            placed = await client.submit("AAPL", "buy", 1, client_order_id="c-1")
            acked.append(placed.status)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit)
                await ahead.waited.wait()  # the ack waits for the fdatasync begun
                assert len(ahead.begun) == 1 and fsynced == []
                # The order went to the venue and its answer was tracked meanwhile; the
                # submit record was in the log before it left: a kill -9 keeps it.
                tracked = await store.get("c-1")
                assert tracked is not None and tracked.status == "filled"
                assert [row[1] for row in records_in_log(path)] == ["c-1"]
                await trio.testing.wait_all_tasks_blocked()
                assert acked == []  # no ack before its fsync
                ahead.gate.set()
        assert acked == ["filled"]


async def test_with_full_a_failed_fsync_after_the_order_left_answers_unknown_and_keeps_it(
    tmp_path: Path, sock: Path
) -> None:
    ahead = GatedFsyncAhead()
    async with _full_service_whose_fsync_fails(tmp_path, sock, ahead) as (store, client):
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def fail_the_fsync() -> None:
                    await ahead.waited.wait()
                    ahead.gate.set()

                nursery.start_soon(fail_the_fsync)
                with pytest.raises(JournalUnavailable, match="was sent and may be at the broker"):
                    await client.submit("AAPL", "buy", 1, client_order_id="c-1")
            await _an_outage_then_the_same_order(store, client, ahead)
    assert rows_on_disk(tmp_path / "journal.db") == {"c-1": "filled"}


@contextlib.asynccontextmanager
async def _full_service_whose_fsync_fails(
    tmp_path: Path, sock: Path, ahead: Any
) -> AsyncIterator[tuple[SqliteStore, AsyncClient]]:
    """The paper service on a ``full`` journal (``tmp_path / "journal.db"``, its probe every
    0.2 s) whose fdatasyncs begun through ``ahead`` fail (EIO) until ``ahead.error`` is
    cleared; its store and a client."""
    ahead.error = OSError(errno.EIO, os.strerror(errno.EIO))
    opener = sqlite_store_opener(
        tmp_path / "journal.db",
        synchronous="full",
        fsync=lambda fd: None,
        fsync_ahead=ahead,
        fsync_route=_by_the_ring(),
        probe_interval_s=0.2,
    )
    async with paper_service(tmp_path, sock, opener) as svc, AsyncClient(sock) as client:
        store = await svc.journal.get()
        assert isinstance(store, SqliteStore)
        yield store, client


async def _an_outage_then_the_same_order(
    store: SqliteStore, client: AsyncClient, ahead: Any
) -> None:
    """After ``ahead``'s failed fdatasync answered ``c-1``: an outage until the probe has
    folded the log into the file, durably; then ``c-1`` asked again (the fdatasyncs
    working) is the same order, kept, not a second one sent."""
    await trio.testing.wait_all_tasks_blocked()  # the writer has seen the failure
    assert store.unavailable is not None
    while store.unavailable is not None:
        await store.availability_changed()
    ahead.error = None
    again = await client.submit("AAPL", "buy", 1, client_order_id="c-1")
    assert again.status == "filled"
    assert len(ahead.begun) == 1  # the second submit found it: nothing left again


async def test_with_full_a_record_while_an_fsync_ahead_runs_waits_for_its_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    ahead = GatedFsyncAhead()
    fsynced: list[int] = []
    async with open_sqlite_store(
        path,
        synchronous="full",
        fsync=fsynced.append,
        fsync_ahead=ahead,
        fsync_route=_by_the_ring(),
    ) as store:
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()  # the writer idle
            await store.record(order("c-1"), event="submit", fsync_by_ack=True)
            assert (len(ahead.begun), fsynced) == (1, [])  # returned before its fsync
            with trio.move_on_after(3600) as waiting:  # its ack's waiter gives up
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(store.durable, "c-1")
                    await ahead.waited.wait()
                    waiting.cancel()
            ahead.gate.set()  # done, and nobody has seen it yet
            await trio.testing.wait_all_tasks_blocked()
            await store.record(order("c-2"), event="submit", fsync_by_ack=True)
            assert (len(ahead.begun), len(fsynced)) == (1, 1)  # one at a time: fsynced here
            await store.durable("c-2")  # sees c-1's done: the next may go ahead again
            await trio.testing.wait_all_tasks_blocked()
            await store.record(order("c-3"), event="submit", fsync_by_ack=True)
            assert (len(ahead.begun), len(fsynced)) == (2, 1)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.durable, "c-3")
                await ahead.waited.wait()
                ahead.gate.set()
    assert rows_on_disk(path) == {"c-1": "pending_new", "c-2": "pending_new", "c-3": "pending_new"}


@contextlib.asynccontextmanager
async def _one_gone_ahead(
    tmp_path: Path, ahead: FsyncAhead, spin_ns: int
) -> AsyncIterator[SqliteStore]:
    """A ``full`` store whose one ``submit`` record (``c-1``) returned before its fdatasync,
    begun through ``ahead``; ``spin_ns``: how long the trio thread may watch for its end."""
    async with open_sqlite_store(
        tmp_path / "journal.db",
        synchronous="full",
        fsync=lambda fd: None,
        fsync_ahead=ahead,
        fsync_route=_by_the_ring(),
        fsync_spin_ns=spin_ns,
    ) as store:
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()  # the writer idle
            await store.record(order("c-1"), event="submit", fsync_by_ack=True)
        yield store


class EndsInItsWatch(GatedFsyncAhead):
    """An fdatasync that ends (or fails: ``error``) within the first watch of it, without
    the gate; counts the waits for it (``done``), which an order acked in its plain step
    never makes."""

    def __init__(self) -> None:
        super().__init__()
        self.watches: list[int] = []
        self.waits = 0

    def spin(self, limit_ns: int) -> bool:
        self.watches.append(limit_ns)
        return True

    def ended(self) -> bool:
        if self.running:
            self.running = False
            if self.error is not None:
                raise self.error
        return True

    async def done(self) -> None:
        self.waits += 1
        await trio.lowlevel.checkpoint()
        self.ended()


async def test_with_full_a_lone_order_whose_fsync_ends_within_its_watch_is_acked_in_its_step(
    tmp_path: Path, sock: Path
) -> None:
    path = tmp_path / "journal.db"
    ahead = EndsInItsWatch()
    opener = sqlite_store_opener(
        path,
        synchronous="full",
        fsync=lambda fd: None,
        fsync_ahead=ahead,
        fsync_route=_by_the_ring(),
    )
    async with paper_service(tmp_path, sock, opener) as svc, AsyncClient(sock) as client:
        store = await svc.journal.get()
        assert isinstance(store, SqliteStore)
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
            placed = await client.submit("AAPL", "buy", 1, client_order_id="c-1")
        assert placed.status == "filled"
        # Its fdatasync was begun ahead and watched once, by its own step (never past the
        # watch's limit); the ack waited for nothing else.
        assert len(ahead.begun) == 1 and len(ahead.watches) == 1
        assert 0 <= ahead.watches[0] <= FSYNC_SPIN_NS
        assert ahead.waits == 0 and not store.acks_wait()
    assert rows_on_disk(path) == {"c-1": "filled"}


async def test_with_full_a_fsync_failed_within_its_watch_answers_unknown_and_is_an_outage(
    tmp_path: Path, sock: Path
) -> None:
    ahead = EndsInItsWatch()
    async with _full_service_whose_fsync_fails(tmp_path, sock, ahead) as (store, client):
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(JournalUnavailable, match="was sent and may be at the broker"):
                await client.submit("AAPL", "buy", 1, client_order_id="c-1")
            assert ahead.waits == 0
            await _an_outage_then_the_same_order(store, client, ahead)
    assert rows_on_disk(tmp_path / "journal.db") == {"c-1": "filled"}


@pytest.mark.parametrize("spin_ns", [0, 300_000])
async def test_with_full_an_ack_watches_for_its_fsync_only_while_no_other_task_is_runnable(
    tmp_path: Path, spin_ns: int
) -> None:
    ahead = EndsInItsWatch()
    async with _one_gone_ahead(tmp_path, ahead, spin_ns) as store:
        with trio.fail_after(10):
            assert store.acks_wait()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.lowlevel.checkpoint)  # another task to run
                assert not store.durable_now("c-1") and ahead.watches == []
            # Nothing else to run: watched here (unless watching is off), and durable.
            assert store.durable_now("c-1") is bool(spin_ns)
            assert len(ahead.watches) == (1 if spin_ns else 0)
            await store.durable("c-1")
            assert not store.acks_wait() and store.durable_now("c-1")
            assert ahead.waits == (0 if spin_ns else 1)


@pytest.fixture
def uring(tmp_path: Path) -> Iterator[tuple[UringFsync, int]]:
    """The io_uring fdatasync and a segment's descriptor to fsync (skipped without io_uring)."""
    ahead = open_fsync_ahead()
    if ahead is None:
        pytest.skip("no io_uring here")
    assert isinstance(ahead, UringFsync)
    fd = os.open(tmp_path / "segment", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield ahead, fd
    finally:
        os.close(fd)
        ahead.close()


async def test_the_io_uring_fdatasync_is_done_once_reported_and_reports_a_failure(
    uring: tuple[UringFsync, int],
) -> None:
    ahead, fd = uring
    with trio.fail_after(10):
        for i in range(3):
            os.pwrite(fd, b"record", i * 6)
            ahead.start(fd)
            await ahead.done()
        ahead.start(-1)
        with pytest.raises(OSError) as failed:
            await ahead.done()
    assert failed.value.errno == errno.EBADF


async def test_the_io_uring_fdatasync_watched_to_its_end_needs_no_wait_after(
    uring: tuple[UringFsync, int],
) -> None:
    ahead, fd = uring
    with trio.fail_after(10):
        assert ahead.spin(10**9)  # none running: nothing to watch
        for i in range(3):
            os.pwrite(fd, b"record", i * 6)
            ahead.start(fd)
            # Watched until it ended (a second at most: the disk answers long before).
            assert ahead.spin(10**9)
            with trio.testing.assert_no_checkpoints():
                await ahead.done()  # its completion is there: no wait for the loop
        ahead.start(fd)
        ahead.spin(0)  # a zero watch returns at once, whether it ended or not
        await ahead.done()


class WatchedFsyncAhead(GatedFsyncAhead):
    """A gated fdatasync whose watches (``spin``) are noted with the time they were allowed."""

    def __init__(self) -> None:
        super().__init__()
        self.watches: list[int] = []

    def spin(self, limit_ns: int) -> bool:
        self.watches.append(limit_ns)
        return False


@pytest.mark.parametrize("spin_ns", [0, 300_000])
async def test_with_full_the_loop_watches_for_a_running_fsync_once_when_idle(
    tmp_path: Path, spin_ns: int
) -> None:
    ahead = WatchedFsyncAhead()
    async with _one_gone_ahead(tmp_path, ahead, spin_ns) as store:
        with trio.fail_after(10):
            assert ahead.begun and ahead.watches == []  # the loop had other work: not yet
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.durable, "c-1")
                await ahead.waited.wait()
                # Let the loop sleep (``wait_all_tasks_blocked`` would keep it from it).
                await trio.sleep(0.01)
                # Watched once, as the loop was about to sleep, for at most its limit.
                assert ahead.watches == ([spin_ns] if spin_ns else [])
                ahead.gate.set()
            await trio.testing.wait_all_tasks_blocked()
            assert ahead.watches == ([spin_ns] if spin_ns else [])  # not again once done


async def test_with_full_a_lone_record_on_an_idle_loop_is_fsynced_here_and_returns_durable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    ahead = GatedFsyncAhead()
    fsynced: list[int] = []
    failures = [OSError(errno.EIO, os.strerror(errno.EIO))]

    def fsync(fd: int) -> None:
        fsynced.append(fd)
        if failures:
            raise failures.pop()

    # By the route's figures this thread runs again at once after its I/O.
    route = FsyncRoute(run_delay_ns=lambda: 0)
    async with open_sqlite_store(
        path, synchronous="full", fsync=fsync, fsync_ahead=ahead, fsync_route=route
    ) as store:
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()  # the writer idle
            await store.record(order("c-1"), event="submit", fsync_by_ack=True)
            # Fdatasynced here, before it returned: its first fdatasync failed, so the
            # writer wrote it again with its own; nothing was begun ahead or is waited for.
            assert len(fsynced) == 2 and ahead.begun == [] and not store.acks_wait()
            assert [row[1] for row in records_in_log(path)] == ["c-1"]
            assert route.loop_writes == 1
            await trio.testing.wait_all_tasks_blocked()
            # Another task to run: the next lone record goes ahead through the ring.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.lowlevel.checkpoint)
                await store.record(order("c-2"), event="submit", fsync_by_ack=True)
                assert len(ahead.begun) == 1 and len(fsynced) == 2 and store.acks_wait()
                nursery.start_soon(store.durable, "c-2")
                await ahead.waited.wait()
                ahead.gate.set()
            assert not store.acks_wait()
    assert rows_on_disk(path) == {"c-1": "pending_new", "c-2": "pending_new"}
