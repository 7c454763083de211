"""The one order state machine: replaces and held legs (issue 17) next to the old moves."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from ult_actors.messages import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    Fill,
    Leg,
    Order,
    OrderRequest,
    OrderStatus,
)
from ult_actors.order_state import IllegalTransition, apply_update, fill_of, order_from_request

BASE = Order(
    id="o-1",
    client_order_id="c-1",
    broker="paper",
    symbol="AAPL",
    side="buy",
    qty=Decimal("10"),
    type="limit",
    time_in_force="day",
    status="accepted",
    limit_price=Decimal("100"),
)


def at(status: OrderStatus, filled: str = "0", **changes: object) -> Order:
    return msgspec.structs.replace(BASE, status=status, filled_qty=Decimal(filled), **changes)


def test_replace_statuses_are_open_or_final() -> None:
    assert {"pending_replace", "held"} <= OPEN_STATUSES
    assert "replaced" in TERMINAL_STATUSES


def test_a_replace_that_takes_effect_ends_the_old_order_replaced_and_linked() -> None:
    pending = apply_update(at("accepted"), at("pending_replace"))
    assert pending.status == "pending_replace"
    done = apply_update(pending, at("replaced", replaced_by="c-2"))
    assert (done.status, done.replaced_by) == ("replaced", "c-2")


@pytest.mark.parametrize(
    ("before", "filled", "back"),
    [
        ("accepted", "0", "accepted"),
        ("partially_filled", "4", "partially_filled"),
    ],
)
def test_a_refused_replace_puts_the_order_back_where_it_was(
    before: OrderStatus, filled: str, back: str
) -> None:
    pending = apply_update(at(before, filled), at("pending_replace", filled))
    refused = apply_update(pending, at("accepted", filled))
    assert (refused.status, refused.filled_qty) == (back, Decimal(filled))


def test_a_fill_that_wins_the_race_with_a_replace_is_kept() -> None:
    pending = apply_update(at("accepted"), at("pending_replace"))
    partly = apply_update(pending, at("pending_replace", "3"))
    assert (partly.status, partly.filled_qty) == ("partially_filled", Decimal("3"))
    filled = apply_update(pending, at("filled", "10"))
    assert filled.status == "filled"
    with pytest.raises(IllegalTransition):
        apply_update(filled, at("replaced", "10"))


def test_a_held_leg_starts_working_and_never_goes_back_to_held() -> None:
    leg = Leg(list_id="l-1", contingency="bracket", role="take_profit", parent_id="c-0")
    held = apply_update(None, at("held", leg=leg))
    working = apply_update(held, at("accepted"))
    assert (working.status, working.leg) == ("accepted", leg)  # the link survives a bare report
    assert apply_update(working, at("held")) is working


def test_replaced_is_final() -> None:
    done = at("replaced", replaced_by="c-2")
    assert apply_update(done, at("accepted")) is done
    with pytest.raises(IllegalTransition):
        apply_update(done, at("canceled"))


def test_a_new_orders_first_state_carries_each_term_of_its_request_to_its_own_field() -> None:
    # Every term differs from every other, so a term read into the wrong field shows.
    request = OrderRequest(
        symbol="MSFT", side="sell", qty=Decimal("3"), type="stop_limit",
        limit_price=Decimal("101"), stop_price=Decimal("102"), time_in_force="gtc",
        extended_hours=True, broker="alpaca", client_order_id="c-9", deadline_ns=5,
    )  # fmt: skip
    order = order_from_request(
        request, broker="paper-2", order_id="o-9", status="accepted", now_ns=7,
        outcome="unknown", arrival_price=Decimal("100.5"), arrival_source="last_trade",
    )  # fmt: skip
    assert order == Order(
        id="o-9", client_order_id="c-9", broker="paper-2", symbol="MSFT", side="sell",
        qty=Decimal("3"), type="stop_limit", time_in_force="gtc", status="accepted",
        limit_price=Decimal("101"), stop_price=Decimal("102"), extended_hours=True,
        created_at=7, updated_at=7, outcome="unknown", arrival_price=Decimal("100.5"),
        arrival_source="last_trade",
    )  # fmt: skip


def test_an_execution_carries_the_orders_ids_and_its_own_terms_each_to_its_own_field() -> None:
    order = msgspec.structs.replace(BASE, id="o-7", client_order_id="c-7", broker="paper-2")
    assert fill_of(
        order, fill_id="f-7", qty=Decimal("2"), price=Decimal("99.5"), ts=11,
        commission=Decimal("0.25"), side="sell", broker="alpaca",
    ) == Fill(
        fill_id="f-7", order_id="o-7", client_order_id="c-7", broker="alpaca", symbol="AAPL",
        side="sell", qty=Decimal("2"), price=Decimal("99.5"), commission=Decimal("0.25"), ts=11,
    )  # fmt: skip
    plain = fill_of(order, fill_id="f-8", qty=Decimal(1), price=Decimal(1), ts=1)
    assert (plain.side, plain.broker, plain.commission) == ("buy", "paper-2", Decimal(0))


def test_a_merge_takes_each_field_from_the_state_it_belongs_to() -> None:
    # Every field of the report differs from the held state's, so a field merged from the
    # wrong side (or read into the wrong place: the merge builds by position) shows.
    held_leg = Leg(list_id="l-1", contingency="oto", role="entry")
    new_leg = Leg(list_id="l-2", contingency="oco", role="stop_loss")
    current = Order(
        id="o-1", client_order_id="c-1", broker="paper", symbol="AAPL", side="buy",
        qty=Decimal("10"), type="limit", time_in_force="day", status="accepted",
        limit_price=Decimal("100"), stop_price=Decimal("99"), extended_hours=True,
        filled_qty=Decimal("2"), avg_fill_price=Decimal("100.5"), created_at=3, updated_at=4,
        outcome="unknown", origin="client", replaces="c-0", leg=held_leg,
        arrival_price=Decimal("101"), arrival_source="last_trade",
    )  # fmt: skip
    report = Order(
        id="o-2", client_order_id="c-2", broker="alpaca", symbol="MSFT", side="sell",
        qty=Decimal("20"), type="market", time_in_force="gtc", status="partially_filled",
        limit_price=Decimal("200"), stop_price=Decimal("199"), extended_hours=False,
        filled_qty=Decimal("5"), avg_fill_price=Decimal("101.5"), created_at=30,
        updated_at=40, reject_reason="why", outcome="definitive", origin="adopted",
        replaces="c-9", replaced_by="c-3", leg=new_leg, arrival_price=Decimal("300"),
        arrival_source="venue_quote",
    )  # fmt: skip
    assert apply_update(current, report) == Order(
        id="o-2", client_order_id="c-1", broker="paper", symbol="AAPL", side="buy",
        qty=Decimal("10"), type="limit", time_in_force="day", status="partially_filled",
        limit_price=Decimal("100"), stop_price=Decimal("99"), extended_hours=True,
        filled_qty=Decimal("5"), avg_fill_price=Decimal("101.5"), created_at=3, updated_at=40,
        reject_reason="why", outcome="definitive", origin="client", replaces="c-0",
        replaced_by="c-3", leg=held_leg, arrival_price=Decimal("101"),
        arrival_source="last_trade",
    )  # fmt: skip
    # An older report (fewer fills, no id, an earlier time) keeps the held state's.
    older = msgspec.structs.replace(
        report, id="", status="partially_filled", filled_qty=Decimal("1"), avg_fill_price=None,
        updated_at=1, reject_reason=None, outcome="unknown", replaces=None, replaced_by=None,
        leg=None,
    )  # fmt: skip
    assert apply_update(current, older) is current
    terminal = msgspec.structs.replace(current, status="filled", filled_qty=Decimal("10"))
    late_fill = msgspec.structs.replace(older, status="filled", filled_qty=Decimal("11"))
    assert apply_update(terminal, late_fill) == msgspec.structs.replace(
        terminal, filled_qty=Decimal("11"), avg_fill_price=Decimal("100.5")
    )
