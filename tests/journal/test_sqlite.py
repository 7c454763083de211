"""What only the SQLite journal does: either writer thread, one process per file, migrations.

What every journal store does is in ``test_store_contract.py``.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
import trio

from tests.journal.harness import fill, order, rows_on_disk
from ult_actors.config import ServiceConfig, ServiceSection
from ult_actors.errors import ConfigError
from ult_actors.journal.changelog import fill_row, log_row
from ult_actors.journal.costs import JournalCostInputs
from ult_actors.journal.schema import (
    OPEN_STATUS_TEST,
    SCHEMA_VERSION,
    migrate,
    schema_version,
)
from ult_actors.journal.sqlite import _ADD_FILL, _UPSERT, Writer, open_sqlite_store
from ult_actors.messages import Fill, Order, ReportQuery
from ult_actors.service import build_service, journal_path


@pytest.mark.parametrize("writer", ["thread", "to_thread"])
async def test_either_writer_has_a_record_on_disk_when_record_returns(
    tmp_path: Path, writer: Writer
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path, writer=writer) as store:
        with trio.fail_after(10):
            await store.record(order("c-1"), event="submit")
        assert rows_on_disk(path) == {"c-1": "pending_new"}
        with trio.fail_after(10):
            await store.record(order("c-1", "filled", oid="b-1"))
        assert rows_on_disk(path) == {"c-1": "filled"}
        assert [(e.event, e.order.status) for e in await store.history("c-1")] == [
            ("submit", "pending_new"),
            ("update", "filled"),
        ]


async def test_a_second_process_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_store(path):
        with pytest.raises(ConfigError, match="in use by another ult process"):
            async with open_sqlite_store(path):
                pass  # pragma: no cover
    async with open_sqlite_store(path):
        pass  # released when the first one closed


async def test_an_old_journal_is_migrated_and_keeps_its_orders(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    body = msgspec.msgpack.encode(order("old-1", "accepted", oid="b-9"))
    conn.execute(
        "INSERT INTO orders VALUES ('old-1', 'b-9', 'paper', 'accepted', 'definitive', 0, 1, ?)",
        (body,),
    )
    conn.execute(
        "INSERT INTO events VALUES (1, 'old-1', 'update', 'accepted', 0, ?)", (body,)
    )
    conn.close()
    async with open_sqlite_store(path) as store:
        assert [o.client_order_id for o in await store.non_terminal()] == ["old-1"]
        with trio.fail_after(10):
            await store.record(order("new-1"))  # sequence continues after the old rows
        assert [e.seq for e in await store.history("new-1")] == [2]
        # Its history begins where its first write was (version 10's ``first_seq``).
        assert [(e.seq, e.order.id) for e in await store.history("old-1")] == [(1, "b-9")]
    conn = sqlite3.connect(path)
    assert schema_version(conn) == SCHEMA_VERSION
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "events_by_order" not in indexes  # version 10: a history is read by sequence
    conn.close()


async def test_a_version_9_journal_reads_each_order_s_history_without_an_index_by_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=9)
    # Two orders' writes interleaved, as version 9 wrote them.
    writes = [
        (1, order("o-1")), (2, order("o-2")),
        (3, order("o-1", "filled", oid="b-1")), (4, order("o-2", "accepted", oid="b-2")),
    ]  # fmt: skip
    for seq, written in writes:
        _old_event(conn, seq, written)
        conn.execute(
            "INSERT OR REPLACE INTO orders VALUES (?, ?, 'paper', ?, '', 0, ?, x'')",
            (written.client_order_id, written.id, written.status, seq),
        )
    conn.close()
    async with open_sqlite_store(path) as store:
        for coid, seqs in (("o-1", [1, 3]), ("o-2", [2, 4])):
            assert [e.seq for e in await store.history(coid)] == seqs
        with trio.fail_after(10):
            await store.record(order("o-2", "filled", oid="b-2"))
            await store.record(order("o-3"), event="submit")
            await store.in_file()
        assert [e.order.status for e in await store.history("o-2")] == [
            "pending_new", "accepted", "filled",
        ]  # fmt: skip
        assert [e.seq for e in await store.history("o-3")] == [6]
        assert await store.history("o-4") == []
    conn = sqlite3.connect(path)
    assert schema_version(conn) == SCHEMA_VERSION >= 10  # a version-9 ult refuses the file
    assert dict(conn.execute("SELECT client_order_id, first_seq FROM orders")) == {
        "o-1": 1, "o-2": 2, "o-3": 6,
    }  # fmt: skip
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "events_by_order" not in indexes
    conn.close()


async def test_a_version_10_journal_keeps_its_fills_for_reports_and_writes_a_fill_to_one_b_tree(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=10)
    # As version 10 wrote them: keyed by broker and fill id, indexed by order and by
    # symbol and time; ``o-1`` filled twice (in the order they came), ``o-2`` not at all.
    old_fills = [
        msgspec.structs.replace(fill("f-2", "o-1"), ts=20, price=Decimal(11)),
        msgspec.structs.replace(fill("f-1", "o-1"), ts=10, price=Decimal(10)),
        msgspec.structs.replace(fill("f-3", "gone"), ts=30, price=Decimal(12)),
    ]
    for old in old_fills:
        conn.execute(
            "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?)",
            (old.broker, old.fill_id, old.client_order_id, old.symbol, old.ts, encode_fill(old)),
        )
    for seq, written in enumerate([order("o-1", "filled", oid="b-1"), order("o-2")], start=1):
        _old_event(conn, seq, written)
        conn.execute(
            "INSERT INTO orders VALUES (?, ?, 'paper', ?, '', 0, ?, x'', ?)",
            (written.client_order_id, written.id, written.status, seq, seq),
        )
    conn.close()
    new_fill = msgspec.structs.replace(fill("f-4", "o-2"), ts=40, price=Decimal(13))
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            store.record_soon(order("o-2", "filled", oid="b-2"))
            store.record_fill(new_fill)
            await store.in_file()
        inputs = await store.cost_inputs(ReportQuery())

        def read() -> tuple[dict[str, list[str]], list[Decimal | None]]:
            listed, prices = {}, []
            for o, fills in inputs.orders():
                listed[o.client_order_id] = [f.fill_id for f in fills]
                # Asked while the orders are read, as a report does.
                prices = [inputs.last_trade("AAPL", ts) for ts in (5, 15, 25, 35, 45)]
            return listed, prices

        listed, prices = await trio.to_thread.run_sync(read)
    # Each order with its own fills in the order they were written, the last trades as
    # the index by symbol and time gave them.
    assert listed == {"o-1": ["f-2", "f-1"], "o-2": ["f-4"]}
    assert prices == [None, Decimal(10), Decimal(11), Decimal(12), Decimal(13)]
    conn = sqlite3.connect(path)
    assert schema_version(conn) == SCHEMA_VERSION >= 11  # a version-10 ult refuses the file
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert not {"fills_by_order", "fills_by_symbol_time", "sqlite_autoindex_fills_1"} & indexes
    # A fill is an append to the table alone: no key, no index (four B-trees before).
    assert _cursors_written(conn, _ADD_FILL.sql(1), 4) == 1
    conn.close()


def encode_fill(written: Fill) -> bytes:
    """``written``'s body as versions 9 to 11 write it (the fields as an array)."""
    return bytes(fill_row(written)[5])


def test_a_version_5_journal_indexes_the_same_open_orders_without_a_table_per_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=5)
    _an_open_and_a_filled_order(conn)
    migrate(conn, target=6)
    indexed = conn.execute(
        f"SELECT client_order_id FROM orders INDEXED BY orders_open WHERE {OPEN_STATUS_TEST}"
        " ORDER BY client_order_id"
    )
    assert [r[0] for r in indexed] == ["o-1"]
    # Writing a row tests its status for the partial index without building a temporary
    # table (what an ``IN`` list of constants costs on every row the fold writes).
    program = [r[1] for r in conn.execute("EXPLAIN " + _V9_UPSERT, (None,) * 6)]
    assert "OpenEphemeral" not in program
    conn.close()


async def test_a_version_6_journal_keeps_its_open_orders_and_writes_an_order_to_fewer_indexes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=6)
    _an_open_and_a_filled_order(conn)
    written_before = _cursors_written(conn, _V9_UPSERT, 6)
    conn.close()
    async with open_sqlite_store(path) as store:
        assert [o.client_order_id for o in await store.non_terminal()] == ["o-1"]
        with trio.fail_after(10):
            await store.record(order("o-3"), event="submit")
            await store.in_file()
    assert rows_on_disk(path) == {"o-1": "accepted", "o-2": "filled", "o-3": "pending_new"}
    async with open_sqlite_store(path) as store:
        assert [o.client_order_id for o in await store.non_terminal()] == ["o-1", "o-3"]
    conn = sqlite3.connect(path)
    assert schema_version(conn) == SCHEMA_VERSION
    # No index of open orders (nothing reads by it) to keep as an order opens and closes.
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "orders_open" not in indexes
    assert _cursors_written(conn, _UPSERT.sql(1), 7) == written_before - 1
    conn.close()


async def test_the_fold_leaves_the_unread_copies_of_outcome_and_status_empty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    _an_open_and_a_filled_order(conn)  # as an earlier version wrote them: both copies set
    conn.close()
    filled = msgspec.structs.replace(order("o-1", "filled", oid="b-1"), outcome="definitive")
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("o-3"), event="submit")
            await store.record(filled)
            await store.in_file()
        assert (await store.get("o-1")) == filled  # the body has what the copies had
        assert [(e.event, e.order.status) for e in await store.history("o-1")] == [
            ("update", "filled")
        ]
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT client_order_id, outcome FROM orders")) == {
        "o-1": "",  # rewritten: no stale copy left beside the new body
        "o-2": "definitive",  # not written since: as it was
        "o-3": "",
    }
    assert [r[0] for r in conn.execute("SELECT status FROM events")] == ["", ""]
    assert schema_version(conn) == SCHEMA_VERSION  # no new version: any ult reads the file
    conn.close()


async def test_an_order_s_body_is_written_once_in_its_last_event_and_read_from_there(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=7)
    # As version 7 wrote them, each body in ``orders`` too: ``o-1`` with its event row,
    # ``o-2`` without one (nothing promised one to an older file's row).
    old_1, old_2 = order("o-1", "accepted", oid="b-1"), order("o-2", "filled", oid="b-2")
    bodies = {old.client_order_id: msgspec.msgpack.encode(old) for old in (old_1, old_2)}
    for seq, old in enumerate([old_1, old_2], start=1):
        conn.execute(
            "INSERT INTO orders VALUES (?, ?, 'paper', ?, '', 0, ?, ?)",
            (old.client_order_id, old.id, old.status, seq, bodies[old.client_order_id]),
        )
    conn.execute("INSERT INTO events VALUES (1, 'o-1', 'update', '', 0, ?)", (bodies["o-1"],))
    conn.close()
    filled_3 = order("o-3", "filled", oid="b-3")
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("o-3"), event="submit")
            await store.record(filled_3)
            await store.in_file()
    conn = sqlite3.connect(path)
    assert schema_version(conn) == SCHEMA_VERSION >= 8  # a version-7 ult refuses the file
    lengths = dict(conn.execute("SELECT client_order_id, length(body) FROM orders"))
    assert lengths == {"o-1": len(bodies["o-1"]), "o-2": len(bodies["o-2"]), "o-3": 0}
    conn.close()
    # Read from the file (one order kept in memory): the listing, a broker id, the report.
    async with open_sqlite_store(path, cache_size=1) as store:
        assert await store.list_orders() == [filled_3, old_2, old_1]
        assert await store.get_by_order_id("b-2") == old_2
        assert await store.non_terminal() == [old_1]
        filled_1 = order("o-1", "filled", oid="b-1")
        with trio.fail_after(10):
            await store.record(filled_1)
            await store.in_file()
        assert await store.list_orders() == [filled_1, filled_3, old_2]
    report = JournalCostInputs(path, ReportQuery()).orders()
    assert [o for o, _ in report] == [filled_1, old_2, filled_3]
    conn = sqlite3.connect(path)
    lengths = dict(conn.execute("SELECT client_order_id, length(body) FROM orders"))
    assert lengths["o-1"] == 0  # rewritten: its copy gone with its old state
    conn.close()


def _an_open_and_a_filled_order(conn: sqlite3.Connection) -> None:
    """Write ``o-1`` (accepted) and ``o-2`` (filled) into an old file's ``orders``."""
    for seq, (coid, status) in enumerate([("o-1", "accepted"), ("o-2", "filled")], start=1):
        body = msgspec.msgpack.encode(order(coid, status, oid=f"b-{seq}"))
        conn.execute(
            "INSERT INTO orders (client_order_id, order_id, broker, status, outcome, updated_at,"
            " seq, body) VALUES (?, ?, 'paper', ?, 'definitive', 0, ?, ?)",
            (coid, f"b-{seq}", status, seq, body),
        )


#: An order's row as versions 6 to 9 wrote it (an older file has no ``first_seq``).
_V9_UPSERT = (
    "INSERT INTO orders (client_order_id, order_id, broker, status, outcome, updated_at, seq,"
    " body) VALUES (?, ?, ?, ?, '', ?, ?, x'') ON CONFLICT (client_order_id) DO UPDATE SET"
    " order_id = excluded.order_id, broker = excluded.broker, status = excluded.status,"
    " outcome = '', updated_at = excluded.updated_at, seq = excluded.seq,"
    " body = x'' WHERE excluded.seq > orders.seq"
)


def _old_event(conn: sqlite3.Connection, seq: int, written: Order) -> None:
    """``written``'s event as versions 9-11 wrote it: named by its client order id."""
    conn.execute(
        "INSERT INTO events VALUES (?, ?, 'update', '', 0, ?)",
        (seq, written.client_order_id, encode_body(written)),
    )


def encode_body(written: Order) -> bytes:
    """``written``'s body as version 9 writes it (the fields as an array)."""
    return bytes(log_row(0, "update", 0, written)[5])


def _cursors_written(conn: sqlite3.Connection, statement: str, parameters: int) -> int:
    """How many B-trees (a table and its indexes) ``statement``'s program opens to write."""
    program = conn.execute("EXPLAIN " + statement, (None,) * parameters)
    return sum(1 for r in program if r[1] == "OpenWrite")


async def test_a_journal_from_a_newer_ult_is_refused_not_guessed_at(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="newer than this ult understands"):
        async with open_sqlite_store(path):
            pass  # pragma: no cover


def test_the_journal_path_follows_systemd_then_xdg_then_config(tmp_path: Path) -> None:
    cfg = ServiceConfig(service=ServiceSection(default_broker="paper"))
    svc = build_service(cfg, env={"STATE_DIRECTORY": "/var/lib/ult-actors"})
    assert journal_path(cfg, svc.state_dir) == Path("/var/lib/ult-actors/journal.db")
    svc = build_service(cfg, env={"XDG_STATE_HOME": str(tmp_path), "HOME": "/nowhere"})
    assert journal_path(cfg, svc.state_dir) == tmp_path / "ult" / "journal.db"
    cfg.journal.path = str(tmp_path / "elsewhere.db")
    assert journal_path(cfg, svc.state_dir) == tmp_path / "elsewhere.db"
    cfg.journal.enabled = False
    assert journal_path(cfg, svc.state_dir) is None


async def test_a_version_11_journal_reads_each_history_across_events_that_name_no_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=11)
    # Version 11 wrote each event with its order's client order id; ``o-12``'s id holds
    # ``o-1``'s bytes.
    writes = [(1, order("o-1")), (2, order("o-12")), (3, order("o-1", "accepted", oid="b-1"))]
    for seq, written in writes:
        _old_event(conn, seq, written)
    conn.execute(
        "INSERT INTO orders (client_order_id, order_id, broker, status, outcome, updated_at,"
        " seq, body, first_seq) VALUES ('o-1', 'b-1', 'paper', 'accepted', '', 0, 3, x'', 1),"
        " ('o-12', '', 'paper', 'pending_new', '', 0, 2, x'', 2)"
    )
    conn.close()
    async with open_sqlite_store(path) as store:
        with trio.fail_after(10):
            await store.record(order("o-12", "accepted", oid="b-12"))
            # A replacement names ``o-1`` in its body (``replaces``): not o-1's history.
            intent = msgspec.structs.replace(order("o-1.r1"), replaces="o-1")
            await store.record(intent, event="replace")
            await store.record(order("o-1", "filled", oid="b-1"))
            await store.record(order("o-2"), event="submit")
            await store.in_file()
        assert [(e.seq, e.order.status) for e in await store.history("o-1")] == [
            (1, "pending_new"), (3, "accepted"), (6, "filled"),
        ]  # fmt: skip
        assert [(e.seq, e.order.status) for e in await store.history("o-12")] == [
            (2, "pending_new"), (4, "accepted"),
        ]  # fmt: skip
        assert [e.event for e in await store.history("o-1.r1")] == ["replace"]
        assert [e.seq for e in await store.history("o-2")] == [7]
    conn = sqlite3.connect(path)
    assert schema_version(conn) == SCHEMA_VERSION >= 12  # a version-11 ult refuses the file
    # What version 11 wrote keeps its client order id; what this one writes names none.
    assert conn.execute("SELECT seq, client_order_id FROM events ORDER BY seq").fetchall() == [
        (1, "o-1"), (2, "o-12"), (3, "o-1"), (4, ""), (5, ""), (6, ""), (7, ""),
    ]  # fmt: skip
    conn.close()
