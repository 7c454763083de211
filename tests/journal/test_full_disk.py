"""A full disk under the journal: new orders refused before they are sent, the rest keeps working.

The disk is filled for real, on the journal's own file: SQLite's
``max_page_count`` caps the file (the service's writer and the "other
process" that fills it share the cap), and a ballast table takes every page
left, as another program filling the disk would. Freeing the ballast is
space returning. Everything else is the real service: the paper broker, the
Unix socket, the client library.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.journal.harness import (
    order,
    paper_service,
    records_in_log,
    rows_in_file,
    short_socket_path,
)
from ult_actors.actors.commands import QueryOrder
from ult_actors.client import AsyncClient, JournalUnavailable, NotFound
from ult_actors.journal.sqlite import SqliteStore, open_sqlite_store, sqlite_store_opener
from ult_actors.runtime.mailbox import call
from ult_actors.systemd.watchdog import status_line

#: Pages the journal file may grow by before the ballast takes them.
ROOM = 300


@pytest.fixture
def sock() -> Iterator[Path]:
    with short_socket_path() as path:
        yield path


class Disk:
    """The journal file's "disk": capped at ``cap`` pages, filled and freed by a ballast."""

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self.cap = cap

    def fill(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute(f"PRAGMA max_page_count = {self.cap}")
        conn.execute("PRAGMA busy_timeout = 5000")
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for _ in range(100 * ROOM):
                conn.execute("INSERT INTO ballast VALUES (zeroblob(1000))")
        conn.close()

    def free(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("DELETE FROM ballast")
        conn.close()

    def status_of(self, coid: str) -> str:
        conn = sqlite3.connect(self.path)
        row = conn.execute("SELECT status FROM orders WHERE client_order_id = ?", (coid,)).fetchone()
        conn.close()
        return str(row[0]) if row else "absent"


async def prepare(state_dir: Path) -> Disk:
    """A journal from an earlier run, with a ballast table, capped ``ROOM`` pages above its size."""
    path = state_dir / "journal.db"
    async with open_sqlite_store(path):
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE ballast (b BLOB NOT NULL)")
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    conn.close()
    return Disk(path, pages + ROOM)


def serving(state_dir: Path, sock: Path, disk: Disk) -> Any:
    """The service on ``sock``; its journal's disk is ``disk``, probed every 50 ms."""
    opener = sqlite_store_opener(disk.path, max_pages=disk.cap, probe_interval_s=0.05)
    return paper_service(state_dir, sock, opener)


async def journal_state(client: AsyncClient) -> tuple[str, str]:
    health = await client.health()
    journal = next(a for a in health.actors if a.name == "journal")
    return journal.state, journal.last_error.message if journal.last_error else ""


async def test_a_full_disk_refuses_new_orders_before_sending_keeps_cancels_and_recovers(
    tmp_path: Path, sock: Path
) -> None:
    disk = await prepare(tmp_path)
    async with serving(tmp_path, sock, disk) as svc, AsyncClient(sock, timeout=20) as client:
        store = await svc.journal.get()
        assert isinstance(store, SqliteStore)
        resting = [
            await client.submit("AAPL", "buy", 1, type="limit", limit_price="1.00",
                                client_order_id=f"rest-{i}")
            for i in range(2)
        ]  # fmt: skip
        assert [o.status for o in resting] == ["accepted", "accepted"]
        await store.in_file()  # folded from the change log into the file before it fills

        disk.fill()
        refused = None
        for i in range(200):  # the pages' last free bytes take a few more orders
            try:
                await client.submit("AAPL", "buy", 1, client_order_id=f"fill-{i}")
            except JournalUnavailable as exc:
                refused, message = f"fill-{i}", exc.message
                break
        assert refused is not None, "the journal never filled up"
        assert "disk full" in message
        # Refused before it was sent: the broker never heard of it, nor the journal.
        with pytest.raises(NotFound):
            await call(svc.brokers["paper"], QueryOrder(order_id=refused), timeout=10)
        with pytest.raises(NotFound):
            await client.order(refused)
        with pytest.raises(JournalUnavailable, match="refused"):
            await client.submit("AAPL", "buy", 1, client_order_id="while-full")
        with pytest.raises(NotFound):
            await call(svc.brokers["paper"], QueryOrder(order_id="while-full"), timeout=10)

        # Health and STATUS say so; the process and every actor but the journal run on.
        state, error = await journal_state(client)
        assert state == "failed" and "disk full" in error
        assert "journal unavailable (disk full): new orders refused" in status_line(svc)

        # Cancels, queries and the kill switch still work.
        canceled = await client.cancel(resting[0].id)
        assert canceled.status == "canceled"
        assert (await client.order("rest-0")).status == "canceled"
        assert "1 orders canceled" in await client.kill_switch(True)
        assert (await client.order("rest-1")).status == "canceled"
        assert {o.client_order_id: o.status for o in await client.orders(limit=3)}.get(
            "rest-1"
        ) in (None, "canceled")
        await client.kill_switch(False)
        assert disk.status_of("rest-0") == "accepted"  # not on disk yet: held in memory

        # Space returns: the journal recovers by itself, with no restart.
        disk.free()
        with trio.fail_after(10):
            while store.unavailable is not None:
                await store.availability_changed()
        assert disk.status_of("rest-0") == "canceled"  # the held news was written
        assert disk.status_of("rest-1") == "canceled"
        after = await client.submit("AAPL", "buy", 1, client_order_id="after")
        assert after.status == "filled"
        with trio.fail_after(10):  # the fill is journaled in the background, moments later
            while disk.status_of("after") != "filled":
                await trio.sleep(0.01)
        state, _ = await journal_state(client)
        assert state == "running"
        assert "journal" not in status_line(svc)
        restarts = {a.name: a.restarts for a in (await client.health()).actors}
        assert restarts["journal"] == 0 and restarts["ult"] == 0


class FullLog:
    """A disk with no room to make the journal's log segments whole, so their records go by
    ``os.write`` (``fallocate``); ``write`` fails with ``ENOSPC`` there while ``full``, after
    writing the first bytes of the record, as a disk filling mid-write does."""

    def __init__(self) -> None:
        self.full = False
        self._write = os.write
        self._fallocate = os.posix_fallocate

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        if "journal.db.log." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fallocate(fd, offset, length)

    def __call__(self, fd: int, data: Any) -> int:
        if self.full and "journal.db.log." in os.readlink(f"/proc/self/fd/{fd}"):
            if len(data) > 3:
                return self._write(fd, bytes(data[:3]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._write(fd, data)


async def test_a_failed_append_refuses_submits_holds_the_news_and_leaves_the_log_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.db"
    disk = FullLog()
    monkeypatch.setattr(os, "posix_fallocate", disk.fallocate)
    monkeypatch.setattr(os, "write", disk)
    async with open_sqlite_store(path, probe_interval_s=0.01, fold_interval_s=3600) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            disk.full = True
            with pytest.raises(JournalUnavailable, match="disk full"):
                await store.record(order("c-2"), event="submit")
            assert store.unavailable == "disk full"
            assert await store.get("c-2") is None  # refused: it never left
            await store.record(order("c-1", "filled", oid="b-1"))  # the broker's news: held
            assert (await store.get("c-1")) == order("c-1", "filled", oid="b-1")
            disk.full = False
            while store.unavailable is not None:
                await store.availability_changed()
            assert rows_in_file(path) == {"c-1": "filled"}  # the probe wrote the held news
            await store.record(order("c-3"), event="submit")
        # The bytes the failed append left were cut off: the log reads on past them.
        assert [row[1] for row in records_in_log(path)][-1:] == ["c-3"]
    async with open_sqlite_store(path) as store:
        assert {o.client_order_id: o.status for o in await store.list_orders()} == {
            "c-1": "filled", "c-3": "pending_new",
        }  # fmt: skip
