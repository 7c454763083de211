"""The journal's bodies (``journal.bodies``): an order's and a fill's fields as a msgpack
array since schema 9, and the maps earlier versions wrote still read, in the file, its
change log and the cost report."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import msgspec
import trio

from tests.journal.harness import fill, order
from ult_actors import segment_log
from ult_actors.journal.bodies import decode_fill, decode_order, is_array
from ult_actors.journal.changelog import LogRecord, fill_row, log_row
from ult_actors.journal.costs import JournalCostInputs
from ult_actors.journal.schema import SCHEMA_VERSION, migrate, schema_version
from ult_actors.journal.sqlite import open_sqlite_store
from ult_actors.messages import Fill, Leg, Order, ReportQuery

#: The stored form's field order: a body is read by position, so fields are only ever
#: added after these (an older body then lacks them and reads their defaults).
_ORDER_FIELDS = [
    "id", "client_order_id", "broker", "symbol", "side", "qty", "type", "time_in_force",
    "status", "limit_price", "stop_price", "extended_hours", "filled_qty", "avg_fill_price",
    "created_at", "updated_at", "reject_reason", "outcome", "origin", "replaces",
    "replaced_by", "leg", "arrival_price", "arrival_source",
]  # fmt: skip
_FILL_FIELDS = [
    "fill_id", "order_id", "client_order_id", "broker", "symbol", "side", "qty", "price",
    "commission", "ts", "fees", "fee_currency", "fee_of",
]  # fmt: skip


def _every_field_set() -> Order:
    return Order(
        id="b-1", client_order_id="c-1", broker="paper", symbol="AAPL", side="sell",
        qty=Decimal("2.5"), type="limit", time_in_force="gtc", status="partially_filled",
        limit_price=Decimal("101.25"), stop_price=Decimal("99"), extended_hours=True,
        filled_qty=Decimal("1"), avg_fill_price=Decimal("101.5"), created_at=5,
        updated_at=6, reject_reason="none", outcome="definitive", origin="adopted",
        replaces="c-0", replaced_by="c-2",
        leg=Leg(list_id="l-1", contingency="oto", role="child", parent_id="c-0"),
        arrival_price=Decimal("100.75"), arrival_source="venue_quote",
    )  # fmt: skip


def test_the_stored_fields_keep_their_order() -> None:
    assert [f.name for f in msgspec.structs.fields(Order)][: len(_ORDER_FIELDS)] == _ORDER_FIELDS
    assert [f.name for f in msgspec.structs.fields(Fill)][: len(_FILL_FIELDS)] == _FILL_FIELDS


def test_a_body_is_the_fields_as_an_array_and_reads_back_whole() -> None:
    full = _every_field_set()
    for written in (full, order("c-3")):
        body = log_row(1, "update", 0, written)[5]
        assert is_array(body)
        assert len(body) < len(msgspec.msgpack.encode(written)) / 2  # no field names
        assert decode_order(body) == written
    body = fill_row(fill("f-1"))[5]
    assert is_array(body)
    assert decode_fill(body) == fill("f-1")


def test_a_body_written_as_a_map_by_an_earlier_version_reads_the_same() -> None:
    full = _every_field_set()
    assert decode_order(msgspec.msgpack.encode(full)) == full
    assert decode_fill(msgspec.msgpack.encode(fill("f-1"))) == fill("f-1")


def test_a_body_without_the_fields_added_later_reads_their_defaults() -> None:
    # As a body written before ``arrival_price`` and ``arrival_source`` existed would be.
    fields = msgspec.structs.astuple(order("c-1"))[:-2]
    assert decode_order(msgspec.msgpack.encode(fields)) == order("c-1")


async def test_a_version_8_journal_with_map_bodies_reads_them_and_writes_arrays(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=8)
    # As version 8 wrote them: an order's body in its event, a fill's in ``fills``, maps.
    old_1 = order("o-1", "accepted", oid="b-1")
    conn.execute("INSERT INTO orders VALUES ('o-1', 'b-1', 'paper', 'accepted', '', 0, 1, x'')")
    conn.execute(
        "INSERT INTO events VALUES (1, 'o-1', 'update', '', 0, ?)", (msgspec.msgpack.encode(old_1),)
    )
    old_fill = fill("f-1", "o-1")
    conn.execute(
        "INSERT INTO fills VALUES ('paper', 'f-1', 'o-1', 'AAPL', 7, ?)",
        (msgspec.msgpack.encode(old_fill),),
    )
    conn.close()
    # ... and its change log, left by a crash before its fold: ``o-2`` and its fill, maps.
    old_2 = order("o-2", "filled", oid="b-2")
    old_fill_2 = fill("f-2", "o-2")
    row, fill_2 = log_row(2, "update", 0, old_2), fill_row(old_fill_2)
    map_row = (*row[:5], bytearray(msgspec.msgpack.encode(old_2)), *row[6:])
    map_fill = (*fill_2[:5], bytearray(msgspec.msgpack.encode(old_fill_2)))
    log = segment_log.SegmentLog(path)
    log.append(segment_log.framed(msgspec.msgpack.encode(LogRecord([map_row], [map_fill]))))
    log.close()
    new_3 = order("o-3", "filled", oid="b-3")
    async with open_sqlite_store(path, cache_size=1) as store:
        assert await store.non_terminal() == [old_1]
        assert await store.get("o-2") == old_2
        with trio.fail_after(10):
            await store.record(order("o-3"), event="submit")
            await store.record(new_3)
            store.record_fill(fill("f-3", "o-3"))
            await store.in_file()
    conn = sqlite3.connect(path)
    assert schema_version(conn) == SCHEMA_VERSION >= 9  # a version-8 ult refuses the file
    bodies = dict(conn.execute("SELECT seq, body FROM events"))
    assert [is_array(body) for _, body in sorted(bodies.items())] == [False, False, True, True]
    # Version 11's ``fills`` keeps the fill id in the body alone.
    fills = {decode_fill(body).fill_id: body for (body,) in conn.execute("SELECT body FROM fills")}
    assert {f: is_array(body) for f, body in fills.items()} == {
        "f-1": False, "f-2": False, "f-3": True
    }  # fmt: skip
    conn.close()
    # Both forms read back from the file (one order kept in memory).
    async with open_sqlite_store(path, cache_size=1) as store:
        assert await store.list_orders() == [new_3, old_2, old_1]
        assert await store.get_by_order_id("b-2") == old_2
        assert [e.order for e in await store.history("o-3")] == [order("o-3"), new_3]
    report = JournalCostInputs(path, ReportQuery())
    assert [(o, list(f)) for o, f in report.orders()] == [
        (old_1, [old_fill]), (old_2, [old_fill_2]), (new_3, [fill("f-3", "o-3")])
    ]  # fmt: skip
