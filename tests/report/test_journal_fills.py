"""The journal keeps every execution once, with its fees, for cost reports."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import msgspec
import trio

from tests.journal.harness import fill, order
from ult_actors.journal.schema import migrate
from ult_actors.journal.sqlite import open_sqlite_store
from ult_actors.messages import ReportQuery


async def test_fills_are_kept_once_with_their_fees_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        store.record_fill(fill("f-1"))
        store.record_fill(fill("f-1"))  # the stream repeated it after a reconnect
        store.record_fill(fill("f-2", coid="c-9", symbol="MSFT"))
    async with open_sqlite_store(path) as store:
        inputs = await store.cost_inputs(ReportQuery(symbol="AAPL"))
        read = list(inputs.orders())
    assert [(o.client_order_id, list(fills)) for o, fills in read] == [("c-1", [fill("f-1")])]
    assert read[0][1][0].total_fees == Decimal("0.0051")


async def test_a_fill_reported_again_in_a_later_fold_is_read_once_as_first_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    first = fill("f-1")
    again = msgspec.structs.replace(first, commission=Decimal("9"))  # told otherwise later
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
            store.record_fill(first)
            store.record_fill(fill("f-2"))
            await store.in_file()
            store.record_fill(again)  # a stream replayed after the first fold
            await store.in_file()
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            store.record_fill(again)  # and after a restart
            await store.in_file()
        read = list((await store.cost_inputs(ReportQuery())).orders())
    assert [(o.client_order_id, list(fills)) for o, fills in read] == [
        ("c-1", [first, fill("f-2")])
    ]


async def test_fills_reported_while_the_disk_is_full_are_written_once_it_has_room(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path):
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE ballast (b BLOB NOT NULL)")
    cap = int(conn.execute("PRAGMA page_count").fetchone()[0]) + 100
    conn.execute(f"PRAGMA max_page_count = {cap}")
    try:  # another program takes every page left
        while True:
            conn.execute("INSERT INTO ballast VALUES (zeroblob(1000))")
    except sqlite3.OperationalError as exc:
        assert "full" in str(exc)
    async with open_sqlite_store(path, max_pages=cap, probe_interval_s=0.05) as store:
        with trio.fail_after(10):
            store.record_soon(order("c-1", "filled", oid="b-1"))
            for i in range(200):  # more than the pages left in the file can take
                store.record_fill(fill(f"f-{i}"))
            await store.availability_changed()
            assert store.unavailable is not None
            store.record_fill(fill("f-late"))  # held while the disk stays full
            conn.execute("DELETE FROM ballast")
            await store.availability_changed()
            assert store.unavailable is None
            [(_, fills)] = list((await store.cost_inputs(ReportQuery())).orders())
    conn.close()
    assert len(fills) == 201 and "f-late" in {f.fill_id for f in fills}


def test_a_journal_from_before_fills_gains_the_table(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    migrate(conn, target=3)
    conn.execute("INSERT INTO events VALUES (1, 'c-1', 'submit', 'pending_new', 0, x'00')")
    assert migrate(conn) == 3
    assert conn.execute("SELECT count(*) FROM fills").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
    conn.close()


async def test_a_report_reads_each_order_with_its_own_fills_and_a_symbols_last_trade(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    priced = msgspec.structs.replace
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            for coid in ("c-2", "c-1", "c-3"):
                await store.record(order(coid), event="submit")
        store.record_fill(priced(fill("f-1"), ts=10, price=Decimal(10)))
        store.record_fill(priced(fill("f-2", coid="c-3"), ts=30, price=Decimal(12)))
        store.record_fill(priced(fill("f-3"), ts=20, price=Decimal(11)))
        store.record_fill(priced(fill("f-4", coid="gone"), ts=25, price=Decimal(99)))
        # A fee posted later, at the execution's price: no trade of its own.
        store.record_fill(priced(fill("a-1", coid="c-3"), ts=40, qty=Decimal(0), price=Decimal(1)))
        inputs = await store.cost_inputs(ReportQuery())

        def read() -> tuple[list[tuple[str, list[str]]], list[Decimal | None]]:
            listed = []
            for o, fills in inputs.orders():
                listed.append((o.client_order_id, sorted(f.fill_id for f in fills)))
                if o.client_order_id == "c-3":  # asked while the orders are read
                    prices = [inputs.last_trade("AAPL", ts) for ts in (5, 20, 29, 45)]
            return listed, prices

        listed, prices = await trio.to_thread.run_sync(read)
    assert listed == [("c-1", ["f-1", "f-3"]), ("c-2", []), ("c-3", ["a-1", "f-2"])]
    assert prices == [None, Decimal(11), Decimal(99), Decimal(12)]
