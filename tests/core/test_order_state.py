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
