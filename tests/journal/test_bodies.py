"""The journal's bodies (``journal.bodies``): an order's and a fill's fields as a msgpack
array since schema 9, and the maps earlier versions wrote still read, in the file, its
change log and the cost report."""

from __future__ import annotations

import random
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import trio

from tests.journal.harness import fill, order
from ult_actors import segment_log
from ult_actors.journal.bodies import decode_fill, decode_order, is_array
from ult_actors.journal.changelog import (
    FILL_COID,
    FILL_SYMBOL,
    FILL_TS,
    ORDER_BROKER,
    ORDER_COID,
    ORDER_ID,
    ORDER_STATUS,
    ORDER_UPDATED_AT,
    BodyTexts,
    LogRecord,
    fill_body,
    fill_row,
    log_row,
)
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


def test_the_folds_news_bodies_with_each_decimals_text_kept_are_the_bodies_written_plainly() -> None:
    # ``BodyTexts`` writes each decimal as its text, made once an object (the last of each
    # kind kept): orders and fills drawing on shared and fresh decimals in any order, the
    # same values as other objects, a quantity also as the filled quantity and the fill's,
    # ``None`` and the defaults, and a value that is not a ``Decimal`` (msgspec writes an
    # ``int`` as one), give the bytes ``log_row`` and ``fill_body`` write, field for field.
    rng = random.Random(16)
    pool: list[Any] = [
        Decimal("187.25"), Decimal("187.250"), Decimal("1E+2"), Decimal("-0"), Decimal(0),
        Decimal("0.005"), Decimal("3"), 3, Decimal("12345678901234567890.123456789"),
    ]  # fmt: skip
    texts = BodyTexts()

    def some() -> Any:
        if rng.random() < 0.3:
            return Decimal(str(rng.randrange(1, 10**6))) / 100  # a fresh object
        return rng.choice(pool)

    def maybe() -> Any:
        return None if rng.random() < 0.3 else some()

    last_qty: Any = Decimal(1)
    for i in range(3000):
        if rng.random() < 0.6:
            qty = some()
            made = Order(
                id=str(i), client_order_id=f"c-{i}", broker="paper", symbol="AAPL",
                side="buy", qty=qty, type="limit", time_in_force="day", status="filled",
                limit_price=maybe(), stop_price=maybe(),
                filled_qty=rng.choice([qty, some(), Decimal(0)]),
                avg_fill_price=maybe(), arrival_price=maybe(), updated_at=i,
            )  # fmt: skip
            if rng.random() < 0.2:
                made = Order(
                    id="", client_order_id=f"c-{i}", broker="paper", symbol="AAPL",
                    side="sell", qty=qty, type="market", time_in_force="day",
                    status="pending_new",
                )  # fmt: skip
            last_qty = qty
            fields, body = texts.order(made)
            row = log_row(i, "update", i, made)
            assert body == row[5]
            # The row's columns, read from the fields as the fold reads them.
            assert (
                fields[ORDER_COID], fields[ORDER_STATUS], fields[ORDER_ID],
                fields[ORDER_BROKER], fields[ORDER_UPDATED_AT],
            ) == (row[1], row[3], row[6], row[7], row[9])  # fmt: skip
        else:
            execution = Fill(
                fill_id=f"f-{i}", order_id=str(i), client_order_id=f"c-{i}", broker="paper",
                symbol="AAPL", side="buy", qty=rng.choice([last_qty, some()]), price=some(),
                commission=rng.choice([some(), Decimal(0)]), ts=i,
            )  # fmt: skip
            fill_fields, fill_body_made = texts.fill(execution)
            assert fill_body_made == fill_body(execution)
            assert (fill_fields[FILL_COID], fill_fields[FILL_TS], fill_fields[FILL_SYMBOL]) == (
                f"c-{i}", i, "AAPL",
            )  # fmt: skip
