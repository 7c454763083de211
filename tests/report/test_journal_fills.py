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


def test_a_journal_from_before_fills_gains_the_table(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    migrate(conn, target=SCHEMA_VERSION - 1)
    conn.execute("INSERT INTO events VALUES (1, 'c-1', 'submit', 'pending_new', 0, x'00')")
    assert migrate(conn) == SCHEMA_VERSION - 1
    assert conn.execute("SELECT count(*) FROM fills").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
    conn.close()
