"""The journal keeps every execution once, with its fees, for cost reports."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import trio

from tests.journal.harness import order
from ult_actors.journal.schema import SCHEMA_VERSION, migrate
from ult_actors.journal.sqlite import open_sqlite_store
from ult_actors.messages import Fill, ReportQuery


def fill(fill_id: str, coid: str = "c-1", symbol: str = "AAPL") -> Fill:
    return Fill(
        fill_id=fill_id,
        order_id="b-1",
        client_order_id=coid,
        broker="paper",
        symbol=symbol,
        side="buy",
        qty=Decimal("1"),
        price=Decimal("10.5"),
        commission=Decimal("0.005"),
        fees={"regulatory": Decimal("0.0001")},
        fee_currency="USD",
        ts=7,
    )


async def test_fills_are_kept_once_with_their_fees_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        store.record_fill(fill("f-1"))
        store.record_fill(fill("f-1"))  # the stream repeated it after a reconnect
        store.record_fill(fill("f-2", coid="c-9", symbol="MSFT"))
    async with open_sqlite_store(path) as store:
        orders, fills = await store.cost_inputs(ReportQuery(symbol="AAPL"))
    assert [o.client_order_id for o in orders] == ["c-1"]
    assert fills == [fill("f-1")]
    assert fills[0].total_fees == Decimal("0.0051")


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
            _, fills = await store.cost_inputs(ReportQuery())
    conn.close()
    assert len(fills) == 201 and fills[-1].fill_id == "f-late"


def test_a_journal_from_before_fills_gains_the_table(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    migrate(conn, target=SCHEMA_VERSION - 1)
    conn.execute("INSERT INTO events VALUES (1, 'c-1', 'submit', 'pending_new', 0, x'00')")
    assert migrate(conn) == SCHEMA_VERSION - 1
    assert conn.execute("SELECT count(*) FROM fills").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
    conn.close()
