"""The paper file's record and bodies: every value back exactly, and older forms still read."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from tests.brokers.paper.test_shared_file import (
    filled_order,
    map_bodies_record,
    placed,
    rows,
    streaming,
)
from ult_actors.brokers.paper.batch import Change, Rows, decode_change, encode_change, stage_change
from ult_actors.brokers.paper.records import WorkingOrder
from ult_actors.brokers.paper.store import LAYOUT, PaperStore
from ult_actors.messages import Fill, Leg, Order

#: ``Order``'s and ``Fill``'s fields in the order the file's bodies hold them (by
#: position, ``records``). A field added at the end with a default goes at the end
#: here too; any other change needs a new body form, or the file's orders misread.
ORDER_FIELDS = (
    "id", "client_order_id", "broker", "symbol", "side", "qty", "type", "time_in_force",
    "status", "limit_price", "stop_price", "extended_hours", "filled_qty", "avg_fill_price",
    "created_at", "updated_at", "reject_reason", "outcome", "origin", "replaces",
    "replaced_by", "leg", "arrival_price", "arrival_source",
)  # fmt: skip
FILL_FIELDS = (
    "fill_id", "order_id", "client_order_id", "broker", "symbol", "side", "qty", "price",
    "commission", "ts", "fees", "fee_currency", "fee_of",
)  # fmt: skip
WORKING_FIELDS = ("order", "triggered", "in_transit", "commission")


def test_the_bodies_fields_keep_their_positions() -> None:
    assert Order.__struct_fields__ == ORDER_FIELDS
    assert Fill.__struct_fields__ == FILL_FIELDS
    assert WorkingOrder.__struct_fields__ == WORKING_FIELDS


def _odd_order() -> WorkingOrder:
    """An order with every field set, its decimals of every shape the venue can make."""
    order = Order(
        id="desk.abc.7", client_order_id="c-7", broker="desk", symbol="AAPL", side="sell",
        qty=Decimal("1.50"), type="stop_limit", time_in_force="gtc", status="partially_filled",
        limit_price=Decimal("99.9999"), stop_price=Decimal("1E+2"), extended_hours=True,
        filled_qty=Decimal("0.75"), avg_fill_price=Decimal("100.123456789012345678901234"),
        created_at=10**18, updated_at=10**18 + 1, reject_reason="none", outcome="definitive",
        origin="client", replaces="c-6", replaced_by="c-8",
        leg=Leg(list_id="L1", contingency="bracket", role="stop_loss", parent_id="c-5", children=("c-9",)), arrival_price=Decimal("-0.000"),
        arrival_source="venue_quote",
    )  # fmt: skip
    return WorkingOrder(order=order, triggered=True, in_transit=True, commission=Decimal("0.0050"))


def _odd_fill(order: Order) -> Fill:
    return Fill(
        fill_id="abc.f3", order_id=order.id, client_order_id=order.client_order_id,
        broker="desk", symbol="AAPL", side="sell", qty=Decimal("0.75"),
        price=Decimal("100.120"), commission=Decimal("0.01"), ts=5,
        fees={"exchange": Decimal("0.003"), "half_spread": Decimal("-1E-7")},
        fee_currency="EUR", fee_of="abc.f2",
    )  # fmt: skip


def _as_handed(change: Change) -> Change:
    return change


def _replayed(change: Change) -> Change:
    """What a replay of the change log reads back of ``change``."""
    read = decode_change(encode_change(change))
    assert isinstance(read, Change)
    return read


#: The writer's thread folds the ``Change`` it is handed; a replay, the log's encode of it.
@pytest.mark.parametrize("way", [_as_handed, _replayed])
def test_every_field_and_decimal_reads_back_from_the_file_exactly(
    tmp_path: Path, way: Callable[[Change], Change]
) -> None:
    working = _odd_order()
    fill = _odd_fill(working.order)
    change = stage_change(
        "desk", {working.order.id: working}, {working.order.id}, [fill],
        [("AAPL", Decimal("-0.75"), Decimal("100.120"), Decimal("12.3400"))],
        [("AAPL", Decimal("101.00"))], (Decimal("99999.99"), 7, 8, 4),
    )  # fmt: skip
    path = str(tmp_path / "paper.db")
    store = PaperStore(path, first_account="desk")
    try:
        folded = Rows()
        folded.add(way(change), 1)
        store.commit(folded)
        assert store.order("desk", working.order.id) == working
        assert store.order_by_client_id("desk", "c-7") == working
        assert store.fills("desk", working.order.id) == [fill]
        snap = store.load("desk")
        assert snap.open_orders == [working]
        # ``==`` on decimals ignores their exponents; the file keeps them too.
        (kept,) = snap.open_orders
        assert str(kept.order.avg_fill_price) == "100.123456789012345678901234"
        assert str(kept.order.arrival_price) == "-0.000"
        assert str(kept.commission) == "0.0050"
        holding = snap.holdings["AAPL"]
        assert [str(holding.qty), str(holding.avg_price), str(holding.realized_pl)] == [
            "-0.75", "100.120", "12.3400",
        ]  # fmt: skip
        assert [str(snap.cash), str(snap.prices["AAPL"])] == ["99999.99", "101.00"]
    finally:
        store.close()


async def test_a_file_of_the_version_before_opens_as_it_is_and_is_marked_for_this_one(
    tmp_path: Path,
) -> None:
    # Layout 2 (bodies maps) is layout 3 but for the bodies this version writes, which a
    # version of layout 2 would misread: the file is marked 3, nothing else changes.
    path = tmp_path / "paper.db"
    order = filled_order("before-1", 1)
    store = PaperStore(str(path), first_account="desk")
    try:
        folded = Rows()
        fill = Fill(
            fill_id="abc.f1", order_id=order.id, client_order_id="before-1", broker="desk",
            symbol="AAPL", side="buy", qty=Decimal(10), price=Decimal(100), ts=2,
        )  # fmt: skip
        folded.add(decode_change(map_bodies_record(WorkingOrder(order=order), fill)), 1)
        store.commit(folded)
    finally:
        store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")
    db.close()
    before = rows(path, "SELECT * FROM orders")
    desk = placed(tmp_path, "desk")
    async with streaming(desk):
        assert await desk.get_order_by_client_id("before-1") == order
        assert desk.venue.fills(order.id) == [fill]
    assert rows(path, "PRAGMA user_version") == [(LAYOUT,)] and LAYOUT == 3
    assert rows(path, "SELECT * FROM orders") == before
