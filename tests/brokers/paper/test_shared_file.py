"""Paper connections of one service: one accounts file, one writer, one clock, lazy accounts."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import random
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from tests.brokers.contract import UpdateLog
from ult_actors import segment_log
from ult_actors.brokers.paper import changelog
from ult_actors.brokers.paper.batch import Change, OrderKeys, Rows
from ult_actors.brokers.paper.connector import PaperConnector, reset_paper_state
from ult_actors.brokers.paper.kind import KIND
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.brokers.paper.store import PaperStore, WorkingOrder, order_body
from ult_actors.cli.exit_codes import EXIT_OK
from ult_actors.cli.paper import reset_main
from ult_actors.errors import BrokerUnavailable, ConfigError, NotFound
from ult_actors.messages import Fill, Order, OrderRequest, OrderUpdate

QUIET: dict[str, Any] = {
    "slippage_bps": Decimal(0),
    "size_impact_bps_per_share": Decimal(0),
    "commission_per_share": Decimal(0),
    "tick_interval_s": 0,
    "start_prices": {"AAPL": Decimal(100)},
}


def placed(state_dir: Path, name: str, **overrides: Any) -> PaperConnector:
    """A connector as the service builds it: settings placed in ``state_dir`` by the kind."""
    settings = KIND.with_state_dir(PaperSettings(**{**QUIET, **overrides}), state_dir, name)
    return KIND.factory(name, settings)()  # type: ignore[return-value]


@asynccontextmanager
async def streaming(*connectors: PaperConnector) -> AsyncIterator[dict[str, UpdateLog]]:
    logs = {c.name: UpdateLog() for c in connectors}
    async with AsyncExitStack() as stack:
        for connector in connectors:
            await connector.connect()
            stack.push_async_callback(connector.disconnect)
        async with trio.open_nursery() as nursery:
            for connector in connectors:
                await nursery.start(connector.stream_updates, logs[connector.name].sink)
            yield logs
            nursery.cancel_scope.cancel()


def buy(coid: str, qty: int = 10, **fields: Any) -> OrderRequest:
    return OrderRequest(symbol="AAPL", side="buy", qty=Decimal(qty), client_order_id=coid, **fields)


def files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the accounts file the way another process would: committed rows only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def crash_copy(path: Path) -> Path:
    """What a ``kill -9`` now would leave: the file and its change log as they are on
    disk, copied aside (not opened: its log is not replayed yet)."""
    crashed = path.parent / f"crash-{next(_crashes)}"
    crashed.mkdir()
    # The log first: a segment is deleted only once the file has it, so one gone
    # meanwhile is in the file copied after it.
    for file in [*changelog.segments(str(path)), Path(f"{path}-wal"), path]:
        with contextlib.suppress(FileNotFoundError):
            shutil.copy(file, crashed / file.name)
    return crashed / path.name


def kept(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows a ``kill -9`` now would leave, once the file is opened again."""
    crashed = crash_copy(path)
    PaperStore(str(crashed), first_account="-").close()  # replays the log
    return rows(crashed, sql)


_crashes = itertools.count()


async def test_every_connection_keeps_its_own_account_in_one_shared_file(tmp_path: Path) -> None:
    desk, fund = placed(tmp_path, "desk"), placed(tmp_path, "fund", starting_cash=Decimal(5000))
    async with streaming(desk, fund):
        await desk.submit(buy("d-1", 10))
        await fund.submit(buy("f-1", 3))
    assert sorted(p.name for p in files(tmp_path) if p.suffix == ".db") == ["paper.db"]
    assert rows(tmp_path / "paper.db", "SELECT name FROM accounts ORDER BY name") == [
        ("desk",),
        ("fund",),
    ]
    desk, fund = placed(tmp_path, "desk"), placed(tmp_path, "fund", starting_cash=Decimal(5000))
    async with streaming(desk, fund):
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 10}
        assert {p.symbol: p.qty for p in await fund.positions()} == {"AAPL": 3}
        assert (await fund.account()).cash == 5000 - 300
        assert (await desk.get_order_by_client_id("d-1")).status == "filled"
        with pytest.raises(Exception, match="no order"):
            await desk.get_order_by_client_id("f-1")  # the other account's order


async def test_a_connection_makes_its_price_walk_only_when_its_account_opens(
    tmp_path: Path,
) -> None:
    # A thousand configured connections that never trade hold no Mersenne Twister each.
    idle = [placed(tmp_path, f"idle{i}", seed=i) for i in range(20)]

    def walks() -> list[str]:
        """The connections that hold a Random of their own (what each refers to)."""
        return [c.name for c in idle if any(isinstance(o, random.Random) for o in gc.get_referents(c))]

    async with streaming(*idle):
        for connector in idle:
            assert await connector.positions() == []
        assert walks() == []
        await idle[3].submit(buy("first", 2))  # first use opens the account and its walk
        assert walks() == ["idle3"]


async def test_a_connection_that_never_trades_writes_nothing_and_answers_as_a_fresh_account(
    tmp_path: Path,
) -> None:
    idle = [placed(tmp_path, f"idle{i}", starting_cash=Decimal(777)) for i in range(20)]
    async with streaming(*idle):
        for connector in idle:
            account = await connector.account()
            assert (account.cash, account.buying_power, account.equity) == (777, 777, 777)
            assert await connector.positions() == []
            assert await connector.open_orders() == []
        assert kept(tmp_path / "paper.db", "SELECT count(*) FROM accounts") == [(0,)]
        order = await idle[3].submit(buy("first", 2))  # first use opens the account
        assert order.status == "filled"
        assert kept(tmp_path / "paper.db", "SELECT name FROM accounts") == [("idle3",)]


def _tasks() -> int:
    count, todo = 0, [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        count += 1
        todo.extend(t for n in task.child_nurseries for t in n.child_tasks)
    return count


async def test_one_clock_ticks_every_connection_with_no_task_of_its_own(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    alone = placed(tmp_path / "a", "desk", seed=5, tick_interval_s=1.0)
    async with streaming(alone):
        alone.set_price("AAPL", Decimal(100))
        await trio.sleep(10.5)
        walked_alone = alone.price("AAPL")
    desk = placed(tmp_path / "b", "desk", seed=5, tick_interval_s=1.0)
    others = [placed(tmp_path / "b", f"o{i}", seed=i, tick_interval_s=0.3) for i in range(10)]
    await trio.testing.wait_all_tasks_blocked()  # the first file's clock has stopped
    before = _tasks()
    async with streaming(desk, *others):
        # One task per connection, its stream, and one clock task for them all (ticks
        # and order arrivals); the writer's hand-overs need no task.
        assert _tasks() - before == 1 + len(others) + 1
        desk.set_price("AAPL", Decimal(100))
        for other in others:
            other.set_price("AAPL", Decimal(100))
        await trio.sleep(10.5)
        # Ten ticks each, on one clock, and each walk its own: the neighbours change nothing.
        assert desk.price("AAPL") == walked_alone != Decimal(100)
        assert all(o.price("AAPL") != Decimal(100) for o in others)


async def test_orders_sent_together_share_one_commit_and_each_reply_survives_a_crash(
    tmp_path: Path,
) -> None:
    desk = placed(tmp_path, "desk", starting_cash=Decimal(10**7))
    async with streaming(desk) as logs:
        await desk.submit(buy("warm-up"))
        exchange = desk._exchange
        assert exchange is not None
        await exchange.writer.durable(exchange.writer.staged_seq)
        commits = exchange.writer.commits
        replies: list[Order] = []

        async def send(i: int) -> None:
            replies.append(await desk.submit(buy(f"b-{i}", 1)))

        async with trio.open_nursery() as nursery:
            for i in range(64):
                nursery.start_soon(send, i)
        assert len(replies) == 64
        # What a reply said is on disk already: a kill -9 now would keep it.
        on_disk = dict(kept(tmp_path / "paper.db", "SELECT client_order_id, body FROM orders"))
        for reply in replies:
            saved = order_body(on_disk[reply.client_order_id])
            assert saved.order.status == reply.status == "filled"
        await exchange.writer.durable(exchange.writer.staged_seq)
        assert exchange.writer.commits - commits < 8  # 64 orders, a few transactions
        await logs["desk"].wait_for(lambda u: u.order.client_order_id == "b-63")


async def test_an_update_is_streamed_only_once_a_crash_would_keep_it(tmp_path: Path) -> None:
    desk = placed(tmp_path, "desk")
    seen: list[tuple[OrderUpdate, str]] = []
    filled = trio.Event()

    async def sink(update: OrderUpdate) -> None:
        (body,) = kept(
            tmp_path / "paper.db",
            f"SELECT body FROM orders WHERE id = '{update.order.id}'",
        )[0]
        seen.append((update, order_body(body).order.status))
        if update.order.status == "filled":
            filled.set()

    await desk.connect()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(desk.stream_updates, sink)
            resting = await desk.submit(buy("r-1", 5, type="limit", limit_price=Decimal(90)))
            desk.set_price("AAPL", Decimal(89))  # fills on the venue, streamed once logged
            with trio.fail_after(5):
                await filled.wait()
            nursery.cancel_scope.cancel()
    finally:
        await desk.disconnect()
    assert [u.order.status for u, _ in seen] == ["accepted", "filled"]
    # The disk has each state by the time it is streamed (or a later one already).
    later = ["accepted", "filled"]
    assert all(later.index(filed) >= later.index(u.order.status) for u, filed in seen)
    assert resting.status == "accepted"


# -- upgrading from one file per connection ------------------------------------------------

_OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE orders (id TEXT PRIMARY KEY, client_order_id TEXT NOT NULL UNIQUE,
                     open INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE fills (fill_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE positions (symbol TEXT PRIMARY KEY, qty TEXT NOT NULL, avg_price TEXT NOT NULL,
                        realized_pl TEXT NOT NULL);
CREATE TABLE prices (symbol TEXT PRIMARY KEY, price TEXT NOT NULL);
"""


def old_account_file(path: Path, name: str, *, cash: str, qty: int) -> Order:
    """A file as the per-connection layout wrote it: one account, one open order."""
    order = Order(
        id=f"{name}.abc.2",
        client_order_id=f"{name}-resting",
        broker=name,
        symbol="AAPL",
        side="buy",
        qty=Decimal(1),
        type="limit",
        time_in_force="gtc",
        limit_price=Decimal(50),
        status="accepted",
        created_at=1,
        updated_at=1,
    )
    db = sqlite3.connect(path)
    db.executescript(_OLD_SCHEMA)
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("cash", cash), ("created_at", "1000000"), ("next_order", "3"), ("next_fill", "2")],
    )
    body = msgspec.json.encode(WorkingOrder(order=order))
    db.execute("INSERT INTO orders VALUES (?, ?, 1, ?)", (order.id, order.client_order_id, body))
    db.execute("INSERT INTO positions VALUES ('AAPL', ?, '100', '0')", (str(qty),))
    db.execute("INSERT INTO prices VALUES ('AAPL', '101')")
    db.commit()
    db.close()
    return order


async def test_old_per_connection_files_are_imported_once_into_the_shared_file(
    tmp_path: Path,
) -> None:
    desk_order = old_account_file(tmp_path / "paper-desk.db", "desk", cash="900", qty=7)
    old_account_file(tmp_path / "paper-fund.db", "fund", cash="50", qty=2)
    desk, fund = placed(tmp_path, "desk"), placed(tmp_path, "fund")
    async with streaming(desk, fund):
        assert (await desk.account()).cash == 900
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 7}
        assert await desk.open_orders() == [desk_order]
        assert desk.price("AAPL") == 101
        assert (await fund.account()).cash == 50
        newer = await desk.submit(buy("new", 1))
        assert newer.id == "desk.1.3"  # the ids go on where they were
    names = sorted(p.name for p in files(tmp_path))
    assert "paper-desk.db.imported" in names and "paper-desk.db" not in names
    assert "paper-fund.db.imported" in names and "paper-fund.db" not in names
    # Read once: a later start takes the shared file's account, not the old copy.
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 8}


async def test_an_old_file_named_by_state_path_is_converted_in_place(tmp_path: Path) -> None:
    path = tmp_path / "mine.db"
    old_account_file(path, "desk", cash="1234", qty=4)
    desk = PaperConnector("desk", PaperSettings(**QUIET, state_path=str(path)))
    async with streaming(desk):
        assert (await desk.account()).cash == 1234
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 4}
    assert rows(path, "SELECT name FROM accounts") == [("desk",)]


async def test_reset_of_one_connection_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ULT_CONFIG", "ULT_STATE_DIR", "ENABLE_PAPER_TRADING", "PAPER_STARTING_CASH"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "ult.toml"
    config.write_text(
        f'[service]\nstate_dir = "{tmp_path}"\ndefault_broker = "desk"\n\n'
        '[brokers.desk]\nkind = "paper"\n\n[brokers.fund]\nkind = "paper"\n'
    )
    old_account_file(tmp_path / "paper-fund.db", "fund", cash="50", qty=2)
    desk, fund = placed(tmp_path, "desk"), placed(tmp_path, "fund")
    async with streaming(desk, fund):
        await desk.submit(buy("d-1", 3))
    shared = tmp_path / "paper.db"
    assert rows(shared, "SELECT name FROM accounts ORDER BY name") == [("desk",), ("fund",)]
    assert reset_main(["--config", str(config), "--broker", "fund"]) == EXIT_OK
    assert rows(shared, "SELECT name FROM accounts") == [("desk",)]
    desk, fund = placed(tmp_path, "desk"), placed(tmp_path, "fund")
    async with streaming(desk, fund):
        assert await fund.positions() == [] and (await fund.account()).cash == 100_000
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 3}


async def test_a_commit_that_fails_ends_every_stream_and_reconnecting_reloads_the_file(
    tmp_path: Path,
) -> None:
    desk, fund = placed(tmp_path, "desk"), placed(tmp_path, "fund")
    ended: dict[str, BaseException] = {}

    async def stream(connector: PaperConnector, task_status: Any) -> None:
        try:
            await connector.stream_updates(UpdateLog().sink, task_status=task_status)
        except BrokerUnavailable as exc:
            ended[connector.name] = exc

    await desk.connect()
    await fund.connect()
    async with trio.open_nursery() as nursery:
        await nursery.start(stream, desk)
        await nursery.start(stream, fund)
        acked = [await desk.submit(buy("first", 1))]
        exchange = desk._exchange
        assert exchange is not None
        writer = exchange.writer
        await writer.durable(writer.staged_seq)
        # The disk is full: the file may not grow by a page.
        db = exchange.store._write
        assert db is not None
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(BrokerUnavailable, match="could not be written"):
            for i in range(1000):
                acked.append(await desk.submit(buy(f"x-{i}", 1)))  # in the change log
                await writer.durable(writer.staged_seq)
        with pytest.raises(BrokerUnavailable, match="could not be written"):
            await desk.submit(buy("refused", 1))
        with trio.fail_after(5):
            while len(ended) < 2:
                await trio.testing.wait_all_tasks_blocked()
    assert set(ended) == {"desk", "fund"}  # every connection on the file must reconnect
    with pytest.raises(BrokerUnavailable):
        await fund.submit(buy("after", 1))
    await desk.disconnect()
    await fund.disconnect()
    desk, fund = placed(tmp_path, "desk"), placed(tmp_path, "fund")
    async with streaming(desk, fund):
        # The file takes in the log: every order anybody was told of is there.
        for order in acked:
            assert await desk.get_order_by_client_id(order.client_order_id) == order
        with pytest.raises(NotFound):  # never written, and nobody was told it was placed
            await desk.get_order_by_client_id("refused")
        assert (await fund.submit(buy("after", 1))).status == "filled"


async def test_a_lone_order_is_committed_off_the_trio_thread_after_its_reply(
    tmp_path: Path,
) -> None:
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        await desk.submit(buy("warm-up"))
        exchange = desk._exchange
        assert exchange is not None
        await exchange.writer.durable(exchange.writer.staged_seq)
        connection = exchange.store._write
        assert connection is not None
        committed_on: list[int] = []

        def trace(statement: str) -> None:
            if statement == "COMMIT":
                committed_on.append(threading.get_ident())

        connection.set_trace_callback(trace)
        reply = await desk.submit(buy("b-1", 1))
        # The reply did not wait for the file, but a kill -9 now would keep it...
        on_disk = dict(kept(tmp_path / "paper.db", "SELECT client_order_id, body FROM orders"))
        saved = order_body(on_disk["b-1"])
        assert saved.order.status == reply.status == "filled"
        # ...and the file has it once the writer's thread has committed it.
        await exchange.writer.durable(exchange.writer.staged_seq)
        assert committed_on and threading.get_ident() not in committed_on
        (body,) = rows(tmp_path / "paper.db", f"SELECT body FROM orders WHERE id = '{reply.id}'")[0]
        assert order_body(body).order == reply


async def test_an_ended_order_reads_back_whole_until_and_once_the_file_has_it_then_only_from_it(
    tmp_path: Path,
) -> None:
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        exchange = desk._exchange
        assert exchange is not None
        writer = exchange.writer
        ended: list[Order] = []
        for commit in range(3):
            ended += [await desk.submit(buy(f"g-{commit}-{i}", 1)) for i in range(4)]
            for order in ended:  # from the venue's memory or the file, all alike
                assert await desk.get_order(order.id) == order
                assert await desk.get_order_by_client_id(order.client_order_id) == order
                assert [fill.qty for fill in desk.venue.fills(order.id)] == [Decimal(1)]
            await writer.durable(writer.staged_seq)
        last = await desk.submit(buy("after", 1))
        # The file answers for every order it has; the venue keeps only the newest.
        unfiled = desk.venue._unfiled
        assert [o.id for o in ended if unfiled.order(o.id) or unfiled.fills(o.id)] == []
        assert unfiled.order(last.id) is not None
        assert await desk.get_order(ended[0].id) == ended[0]


async def test_the_log_is_cut_into_segments_and_those_in_the_file_are_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changelog, "SEGMENT_BYTES", 4000)  # a few orders a segment
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        replies = [await desk.submit(buy(f"s-{i}", 1)) for i in range(60)]
        exchange = desk._exchange
        assert exchange is not None
        await exchange.writer.durable(exchange.writer.staged_seq)
        # Every closed segment the file has taken in is gone: the log does not grow.
        assert len(changelog.segments(str(tmp_path / "paper.db"))) <= 2  # 60 orders: ~20 made
        on_disk = dict(kept(tmp_path / "paper.db", "SELECT client_order_id, id FROM orders"))
        assert {r.client_order_id: r.id for r in replies}.items() <= on_disk.items()


async def test_durable_returns_only_once_the_segments_the_file_took_in_are_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer's thread commits, then deletes the segments that commit folded: a
    # ``durable`` that returned between the two would let a caller see a log the file
    # already holds (seen once under load as a flaky segment count).
    monkeypatch.setattr(changelog, "SEGMENT_BYTES", 4000)
    deleting, go_on = threading.Event(), threading.Event()
    unlink = Path.unlink

    def held_unlink(self: Path, missing_ok: bool = False) -> None:
        if threading.current_thread().name.startswith("paper-writer:") and ".log." in self.name:
            deleting.set()
            go_on.wait(10)
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", held_unlink)
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        exchange = desk._exchange
        assert exchange is not None
        for i in itertools.count():
            await desk.submit(buy(f"s-{i}", 1))
            if exchange.writer._log is not None and exchange.writer._log.segment.name[-2:] != ".1":
                break  # the first segment is closed: the next commit deletes it
        first = Path(f"{tmp_path / 'paper.db'}.log.1")
        await trio.to_thread.run_sync(deleting.wait, 10)  # the thread is deleting it now
        released = False

        async def release_once_waiting() -> None:
            nonlocal released
            await trio.testing.wait_all_tasks_blocked()
            released = True
            go_on.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(release_once_waiting)
            await exchange.writer.durable(exchange.writer.staged_seq)
            gone_when_durable = first not in changelog.segments(str(tmp_path / "paper.db"))
            go_on.set()
        assert released and gone_when_durable


async def test_the_writer_folds_each_call_as_it_ended_though_the_venue_moved_on(
    tmp_path: Path,
) -> None:
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        await desk.submit(buy("warm-up"))
        resting = await desk.submit(buy("r-1", 5, type="limit", limit_price=Decimal(90)))
        await desk.cancel(resting.id)
        # The records the writer's thread folds, as the change log holds them (all of
        # them while the connection is open: its one segment is deleted as it leaves).
        recorded = [
            c
            for c in changelog.read(str(tmp_path / "paper.db"))
            if isinstance(c, Change) and any(row[1] == resting.id for row in c.orders)
        ]
    # The writer's thread may fold the submit's batch only after the cancel: it must
    # still write the order as the submit left it, open, not the venue's later state.
    submitted = Rows()
    submitted.add(recorded[0])
    # Keys after 8: the order's row is keyed 9.
    (oid, coid, is_open, body, fills, nfills, key), accounts = submitted.orders(OrderKeys(8, {}))
    assert (oid, coid, is_open, fills, nfills, key) == (resting.id, "r-1", 1, b"", 0, 9)
    assert accounts == [recorded[0].account[0]]
    assert order_body(bytes(body)).order.status == "accepted"


def filled_order(coid: str, number: int) -> Order:
    """A market buy of 10 AAPL at 100, filled, as an earlier version logged it."""
    return Order(
        id=f"desk.abc.{number}",
        client_order_id=coid,
        broker="desk",
        symbol="AAPL",
        side="buy",
        qty=Decimal(10),
        type="market",
        time_in_force="day",
        status="filled",
        filled_qty=Decimal(10),
        avg_fill_price=Decimal(100),
        created_at=1,
        updated_at=2,
    )


async def test_a_change_log_an_earlier_version_wrote_is_replayed(tmp_path: Path) -> None:
    # Before a batch was its own record, each record held the file's rows: a crash
    # of that version leaves such a log, and the upgrade must not lose it.
    order = filled_order("old-1", 1)
    body = msgspec.json.encode(WorkingOrder(order=order))
    record = [
        7,
        [["desk", order.id, "old-1", 0, body]],
        [],
        [["desk", "AAPL", "10", "100", "0"]],
        [["desk", "AAPL", "100"]],
        [["desk", "99000", 5, 2, 1]],
    ]
    segment = tmp_path / "paper.db.log.1"
    segment.write_bytes(segment_log.framed(msgspec.msgpack.encode(record)))
    desk = placed(tmp_path, "desk", starting_cash=Decimal(100_000))
    async with streaming(desk):
        assert await desk.get_order_by_client_id("old-1") == order
        assert (await desk.account()).cash == 99_000
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 10}
    assert not segment.exists()  # taken in, then deleted


def objects_record(working: WorkingOrder, fill: Fill) -> bytes:
    """A record as the version before the one before wrote it: copies of the venue's
    objects (the file's bodies were JSON then)."""
    return msgspec.msgpack.encode([
        "desk", [[working, False]], [fill], [["AAPL", Decimal(10), Decimal(100), Decimal(0)]],
        [["AAPL", Decimal(100)]], Decimal(99_000), 5, 2, 2, 1,
    ])  # fmt: skip


def map_bodies_record(working: WorkingOrder, fill: Fill) -> bytes:
    """A record as the version before wrote it: tag 3, each body a msgpack map."""
    return msgspec.msgpack.encode((
        3, "desk", {working.order.id: working}, [working.order.id], [fill],
        [("AAPL", "10", "100", "0")], [("AAPL", "100")], "99000", 5, 2, 2,
    ))  # fmt: skip


def array_bodies_record(working: WorkingOrder, fill: Fill) -> bytes:
    """A record as the version before wrote it: tag 4, each body a msgpack array of its
    fields by position, its rows' keys only in it."""
    order = working.order
    body = (
        msgspec.structs.astuple(order),
        working.triggered,
        working.in_transit,
        working.commission,
    )
    return msgspec.msgpack.encode((
        4, "desk", {order.id: body}, [order.id], [msgspec.structs.astuple(fill)],
        [("AAPL", "10", "100", "0")], [("AAPL", "100")], "99000", 5, 2, 2,
    ))  # fmt: skip


@pytest.mark.parametrize("record_of", [objects_record, map_bodies_record, array_bodies_record])
async def test_a_change_log_of_an_earlier_version_is_replayed_beside_this_versions_rows(
    tmp_path: Path, record_of: Callable[[WorkingOrder, Fill], bytes]
) -> None:
    # A crash of an earlier version leaves its log: it is taken in, and the account
    # goes on trading in this version's records, both read back alike.
    order = filled_order("before-1", 1)
    fill = Fill(
        fill_id="abc.f1",
        order_id=order.id,
        client_order_id="before-1",
        broker="desk",
        symbol="AAPL",
        side="buy",
        qty=Decimal(10),
        price=Decimal(100),
        ts=2,
    )
    record = record_of(WorkingOrder(order=order), fill)
    segment = tmp_path / "paper.db.log.1"
    segment.write_bytes(segment_log.framed(record))
    desk = placed(tmp_path, "desk", starting_cash=Decimal(100_000))
    async with streaming(desk):
        assert await desk.get_order_by_client_id("before-1") == order
        assert desk.venue.fills(order.id) == [fill]
        assert (await desk.account()).cash == 99_000
        after = await desk.submit(buy("after-1", 5))
        exchange = desk._exchange
        assert exchange is not None
        await exchange.writer.durable(exchange.writer.staged_seq)
        assert await desk.get_order(after.id) == after  # read back from the file
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 15}
    assert not segment.exists()  # taken in, then deleted
    desk = placed(tmp_path, "desk", starting_cash=Decimal(100_000))
    async with streaming(desk):  # reopened: everything from the file
        assert await desk.get_order_by_client_id("before-1") == order
        assert await desk.get_order_by_client_id("after-1") == after
        assert desk.venue.fills(order.id) == [fill]
        assert [f.qty for f in desk.venue.fills(after.id)] == [5]
        assert (await desk.account()).cash == 99_000 - 5 * 100
        assert {p.symbol: p.qty for p in await desk.positions()} == {"AAPL": 15}


async def test_a_change_log_that_cannot_be_opened_refuses_the_file_and_lets_go_of_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "paper.db.log.1").mkdir()  # where the first segment goes
    with pytest.raises(ConfigError, match="cannot be used"):
        await placed(tmp_path, "desk").connect()
    (tmp_path / "paper.db.log.1").rmdir()  # fixed: the file is free to open again
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        assert (await desk.submit(buy("after-fix", 1))).status == "filled"


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` unwritable, for root too (root ignores mode bits)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    else:
        directory.chmod(0o500)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        else:
            directory.chmod(0o700)


async def test_a_change_log_left_in_a_read_only_directory_is_a_named_error_and_loses_nothing(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    desk = placed(live, "desk")
    async with streaming(desk):
        assert desk._exchange is not None
        desk._exchange.writer.interval_s = 60  # the order is in the change log only
        await desk.submit(buy("d-1", 3))
        crashed = crash_copy(live / "paper.db")
    segment = changelog.segments(str(crashed))[0]
    for name in ("paper.db.lock", "paper.db-shm"):  # there from the crashed run
        (crashed.parent / name).touch()
    # The log can be read but not deleted once taken in: the file is refused,
    # naming the segment and what to do, rather than an OSError escaping.
    denied = r"Operation not permitted|Permission denied"
    with read_only(crashed.parent), pytest.raises(ConfigError, match=denied) as err:
        await placed(crashed.parent, "desk").connect()
    assert str(segment) in str(err.value) and "permissions" in str(err.value)
    desk = placed(crashed.parent, "desk")
    async with streaming(desk):  # fixed: the order is there
        assert (await desk.get_order_by_client_id("d-1")).status == "filled"


async def test_reset_of_one_account_after_a_crash_keeps_what_the_others_logged(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    desk, fund = placed(live, "desk"), placed(live, "fund")
    async with streaming(desk, fund):
        assert desk._exchange is not None
        desk._exchange.writer.interval_s = 60  # the file lags well behind; the log has all
        await desk.submit(buy("d-1", 3))
        await fund.submit(buy("f-1", 2))
        crashed = crash_copy(live / "paper.db")
    assert rows(crashed, "SELECT count(*) FROM orders") == [(0,)]
    assert reset_paper_state(str(crashed), "fund") is True
    assert not changelog.segments(str(crashed))  # taken in before the reset
    desk, fund = placed(crashed.parent, "desk"), placed(crashed.parent, "fund")
    async with streaming(desk, fund):
        assert (await desk.get_order_by_client_id("d-1")).status == "filled"
        assert await fund.positions() == [] and (await fund.account()).cash == 100_000
