"""Replace terms and order lists are checked before anything leaves the service, each
refusal naming the field a trader has to fix (issue 17)."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from ult_actors.client import (
    bracket_request,
    oco_request,
    order_request,
    oto_request,
    replace_request,
)
from ult_actors.errors import InvalidOrder
from ult_actors.messages import Order, OrderListRequest, ReplaceRequest
from ult_actors.validation import replaced_terms, validate_order_list

WORKING = Order(
    id="o-1",
    client_order_id="c-1",
    broker="paper",
    symbol="AAPL",
    side="buy",
    qty=Decimal("10"),
    type="limit",
    time_in_force="day",
    status="partially_filled",
    limit_price=Decimal("100"),
    filled_qty=Decimal("4"),
)


def test_replace_keeps_what_it_does_not_change() -> None:
    terms = replaced_terms(
        WORKING,
        ReplaceRequest(order_id="c-1", limit_price=Decimal("101"), client_order_id="c-2"),
    )
    assert (terms.qty, terms.limit_price, terms.time_in_force) == (
        Decimal("10"),
        Decimal("101"),
        "day",
    )
    assert (terms.client_order_id, terms.broker, terms.side) == ("c-2", "paper", "buy")


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (ReplaceRequest(order_id="c-1"), None, "at least one change"),
        (ReplaceRequest(order_id="c-1", qty=Decimal("4")), "qty", "exceed what has filled"),
        (ReplaceRequest(order_id="c-1", stop_price=Decimal("99")), "stop_price", "does not apply"),
        (ReplaceRequest(order_id="c-1", limit_price=Decimal("1e999")), "limit_price", "too large"),
        (
            ReplaceRequest(order_id="c-1", qty=Decimal("11"), client_order_id="has space"),
            "client_order_id",
            "1-48 characters",
        ),
    ],
)
def test_replace_refusals_name_the_field(
    change: ReplaceRequest, field: str | None, words: str
) -> None:
    with pytest.raises(InvalidOrder, match=words) as err:
        replaced_terms(WORKING, change)
    assert err.value.field == field


def test_the_client_refuses_a_replace_that_changes_nothing_before_sending() -> None:
    with pytest.raises(InvalidOrder, match="at least one change"):
        replace_request("c-1")
    assert replace_request("c-1", qty="12").qty == Decimal("12")


def test_well_formed_lists_pass() -> None:
    validate_order_list(bracket_request("AAPL", "buy", 10, take_profit="110", stop_loss="90"))
    validate_order_list(
        bracket_request(
            "AAPL",
            "sell",
            10,
            type="limit",
            limit_price="100",
            take_profit="90",
            stop_loss="110",
            stop_limit="111",
        )
    )
    validate_order_list(oco_request("AAPL", "sell", 10, take_profit="110", stop_loss="90"))
    validate_order_list(oco_request("AAPL", "buy", 10, take_profit="90", stop_loss="110"))
    validate_order_list(
        oto_request(
            order_request("AAPL", "buy", 10, type="limit", limit_price="100"),
            order_request("AAPL", "sell", 10, type="limit", limit_price="120"),
        )
    )


def _with_leg(request: OrderListRequest, i: int, **changes: object) -> OrderListRequest:
    legs = list(request.legs)
    legs[i] = msgspec.structs.replace(legs[i], **changes)
    return msgspec.structs.replace(request, legs=legs)


BRACKET = bracket_request("AAPL", "buy", 10, take_profit="110", stop_loss="90")


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        (msgspec.structs.replace(BRACKET, legs=BRACKET.legs[:2]), "legs", "has 3 legs"),
        (
            bracket_request("AAPL", "buy", 10, take_profit="90", stop_loss="110"),
            "legs[1].limit_price",
            "must be above the stop loss",
        ),
        (_with_leg(BRACKET, 1, side="buy"), "legs[1].side", "other side"),
        (_with_leg(BRACKET, 2, qty=Decimal(5)), "legs[2].qty", "entry's quantity"),
        (_with_leg(BRACKET, 2, symbol="MSFT"), "legs[2].symbol", "one symbol"),
        (_with_leg(BRACKET, 0, qty=Decimal(-1)), "legs[0].qty", "entry leg"),
        (
            _with_leg(BRACKET, 1, type="market", limit_price=None),
            "legs[1].type",
            "must be a limit order",
        ),
        (
            bracket_request(
                "AAPL",
                "buy",
                10,
                type="limit",
                limit_price="120",
                take_profit="110",
                stop_loss="90",
            ),
            "legs[0].limit_price",
            "must lie between",
        ),
        (
            oco_request("AAPL", "buy", 10, take_profit="110", stop_loss="90"),
            "legs[0].limit_price",
            "must be below the stop loss",
        ),
        (
            _with_leg(_with_leg(BRACKET, 1, client_order_id="x"), 2, client_order_id="x"),
            "legs[2].client_order_id",
            "used by two legs",
        ),
        (_with_leg(BRACKET, 1, broker="alpaca"), "legs[1].broker", "one broker"),
    ],
)
def test_malformed_lists_are_refused_naming_the_leg(
    request_: OrderListRequest, field: str, words: str
) -> None:
    with pytest.raises(InvalidOrder, match=words) as err:
        validate_order_list(request_)
    assert err.value.field == field
