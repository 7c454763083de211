"""Mapping between our types and v20's: order bodies, transactions, positions, errors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest

from ult_actors.brokers.oanda.errors import error_from_response, error_from_transport
from ult_actors.brokers.oanda.mapping import (
    account_from_summary,
    fill_from,
    order_body,
    order_from_create,
    order_from_wire,
    position_from_wire,
    status_for_cancel,
    with_cancel,
    with_fills,
)
from ult_actors.brokers.oanda.wire import (
    WireAccountSummary,
    WireOrder,
    WirePosition,
    WireTransaction,
    time_ns,
)
from ult_actors.errors import (
    AuthFailed,
    BrokerUnavailable,
    DuplicateOrder,
    InsufficientFunds,
    Internal,
    InvalidOrder,
    NotFound,
    RateLimited,
    UltError,
)
from ult_actors.messages import OrderRequest


def request(**fields: Any) -> OrderRequest:
    values: dict[str, Any] = {
        "symbol": "EUR_USD",
        "side": "buy",
        "qty": Decimal(1000),
        "client_order_id": "c-1",
        **fields,
    }
    return OrderRequest(**values)


def txn(**fields: Any) -> WireTransaction:
    return msgspec.convert(fields, WireTransaction)


# -- our requests to v20 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"type": "MARKET", "units": "1000", "timeInForce": "FOK"}),
        ({"side": "sell", "qty": Decimal(2500)}, {"units": "-2500", "timeInForce": "FOK"}),
        ({"qty": Decimal("1000.0")}, {"units": "1000"}),
        ({"time_in_force": "ioc"}, {"type": "MARKET", "timeInForce": "IOC"}),
        ({"time_in_force": "gtc"}, {"type": "MARKET", "timeInForce": "FOK"}),
        (
            {"type": "limit", "limit_price": Decimal("1.07500"), "time_in_force": "day"},
            {"type": "LIMIT", "price": "1.07500", "timeInForce": "GFD"},
        ),
        (
            {"type": "limit", "limit_price": Decimal("1.075"), "time_in_force": "fok"},
            {"type": "LIMIT", "price": "1.075", "timeInForce": "FOK"},
        ),
        (
            {"type": "stop", "stop_price": Decimal("1.1"), "time_in_force": "gtc"},
            {"type": "STOP", "price": "1.1", "timeInForce": "GTC"},
        ),
        (
            {
                "type": "stop_limit",
                "stop_price": Decimal("1.1"),
                "limit_price": Decimal("1.1010"),
                "time_in_force": "gtc",
            },
            {"type": "STOP", "price": "1.1", "priceBound": "1.1010", "timeInForce": "GTC"},
        ),
    ],
)
def test_order_bodies(fields: dict[str, Any], expected: dict[str, str]) -> None:
    body = order_body(request(**fields))["order"]
    assert body["instrument"] == "EUR_USD"
    assert body["clientExtensions"] == {"id": "c-1"}
    assert body["positionFill"] == "DEFAULT"
    assert {k: body.get(k) for k in expected} == expected
    if body["type"] != "STOP" or "priceBound" not in expected:
        assert "priceBound" not in body


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"symbol": "EURUSD"}, "symbol"),
        ({"symbol": "eur_usd"}, "symbol"),
        ({"time_in_force": "opg"}, "time_in_force"),
        ({"time_in_force": "cls"}, "time_in_force"),
        (
            {
                "type": "limit",
                "limit_price": Decimal(1),
                "time_in_force": "day",
                "extended_hours": True,
            },
            "extended_hours",
        ),
    ],
)
def test_requests_oanda_cannot_take_are_refused_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidOrder) as caught:
        order_body(request(**fields))
    assert caught.value.field == field


# -- v20 orders and transactions to ours --------------------------------------------


def test_create_transactions_are_accepted_orders_of_our_types() -> None:
    limit = order_from_create(
        txn(
            type="LIMIT_ORDER",
            id="6121",
            time="1714572131.512893004",
            instrument="EUR_USD",
            units="-1500",
            price="1.09250",
            timeInForce="GTC",
            clientExtensions={"id": "gw-124"},
        ),
        "oanda",
    )
    assert limit is not None
    assert (limit.id, limit.client_order_id, limit.status) == ("6121", "gw-124", "accepted")
    assert (limit.side, limit.qty, limit.type, limit.limit_price) == (
        "sell",
        Decimal(1500),
        "limit",
        Decimal("1.09250"),
    )
    assert limit.created_at == 1714572131_512893004
    mit = order_from_create(
        txn(type="MARKET_IF_TOUCHED_ORDER", id="7", units="10", price="1.2", timeInForce="GTD"),
        "oanda",
    )
    assert mit is not None
    assert (mit.type, mit.limit_price, mit.time_in_force) == ("limit", Decimal("1.2"), "gtc")
    assert mit.client_order_id == "oanda-7"  # placed elsewhere, without our client id
    bounded = order_from_create(
        txn(type="STOP_ORDER", id="8", units="10", price="1.2", priceBound="1.21"), "oanda"
    )
    assert bounded is not None
    assert (bounded.type, bounded.stop_price, bounded.limit_price) == (
        "stop_limit",
        Decimal("1.2"),
        Decimal("1.21"),
    )
    assert order_from_create(txn(type="TAKE_PROFIT_ORDER", id="9", price="1.3"), "oanda") is None


def test_fills_fill_the_order_and_a_partial_one_is_partial() -> None:
    base = order_from_create(
        txn(type="MARKET_ORDER", id="10", units="1000", timeInForce="IOC"), "oanda"
    )
    assert base is not None
    full = txn(
        type="ORDER_FILL",
        id="11",
        orderID="10",
        units="1000",
        price="1.08",
        fullVWAP="1.0801",
        commission="-0.25",
        time="1714572131.5",
    )
    fill = fill_from(full, base)
    assert (fill.fill_id, fill.qty, fill.price, fill.commission) == (
        "11",
        Decimal(1000),
        Decimal("1.0801"),
        Decimal("0.25"),
    )
    done = with_fills(base, [fill])
    assert (done.status, done.filled_qty, done.avg_fill_price) == (
        "filled",
        Decimal(1000),
        Decimal("1.0801"),
    )
    part = with_fills(
        base, [fill_from(txn(type="ORDER_FILL", id="11", units="400", price="1.08"), base)]
    )
    assert (part.status, part.filled_qty) == ("partially_filled", Decimal(400))
    more = fill_from(txn(type="ORDER_FILL", id="14", units="600", price="1.09"), base)
    whole = with_fills(
        part, [fill_from(txn(type="ORDER_FILL", id="11", units="400", price="1.08"), base), more]
    )
    assert (whole.status, whole.filled_qty, whole.avg_fill_price) == (
        "filled",
        Decimal(1000),
        Decimal("1.086"),
    )
    rest = with_cancel(part, "INSUFFICIENT_LIQUIDITY", 5)
    assert (rest.status, rest.filled_qty) == ("canceled", Decimal(400))


def test_a_fill_names_the_financing_and_guaranteed_fee_it_charged_but_not_the_spread() -> None:
    base = order_from_create(
        txn(type="MARKET_ORDER", id="10", units="-1000", timeInForce="FOK"), "oanda"
    )
    assert base is not None
    closing = txn(
        type="ORDER_FILL",
        id="12",
        orderID="10",
        units="-1000",
        price="1.08",
        commission="0.5",
        financing="-0.0312",
        guaranteedExecutionFee="0.1",
        halfSpreadCost="0.07",
        time="1714572131.5",
    )
    fill = fill_from(closing, base)
    assert fill.commission == Decimal("0.5")
    # Financing paid (v20 signs it as the balance moves) is a cost; the half spread is
    # already in the price.
    assert fill.fees == {"financing": Decimal("0.0312"), "guaranteed_execution": Decimal("0.1")}
    assert fill.total_fees == Decimal("0.6312")


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("CLIENT_REQUEST", "canceled"),
        ("CLIENT_REQUEST_REPLACED", "canceled"),
        ("INSUFFICIENT_LIQUIDITY", "canceled"),
        ("BOUNDS_VIOLATION", "canceled"),
        ("LINKED_TRADE_CLOSED", "canceled"),
        ("TIME_IN_FORCE_EXPIRED", "expired"),
        ("INSUFFICIENT_MARGIN", "rejected"),
        ("MARKET_HALTED", "rejected"),
        ("ACCOUNT_LOCKED", "rejected"),
        ("FIFO_VIOLATION", "rejected"),
        ("POSITION_SIZE_EXCEEDED", "rejected"),
        ("SOME_FUTURE_REASON", "rejected"),
    ],
)
def test_cancel_reasons_decide_the_final_state(reason: str, status: str) -> None:
    assert status_for_cancel(reason) == status
    base = order_from_create(txn(type="LIMIT_ORDER", id="1", units="5", price="1"), "oanda")
    assert base is not None
    canceled = with_cancel(base, reason, 1)
    assert canceled.status == status
    assert canceled.reject_reason == (None if reason == "CLIENT_REQUEST" else reason)


def test_a_fetched_order_keeps_state_and_our_client_id() -> None:
    wire = msgspec.convert(
        {
            "id": "31",
            "type": "STOP",
            "state": "CANCELLED",
            "instrument": "USD_JPY",
            "units": "-20",
            "price": "151.000",
            "timeInForce": "GFD",
            "clientExtensions": {"id": "mine-31"},
            "createTime": "2024-05-01T14:02:11.512893004Z",
            "cancelledTime": "2024-05-01T14:03:11Z",
        },
        WireOrder,
    )
    order = order_from_wire(wire, "oanda")
    assert order is not None
    assert (order.client_order_id, order.status, order.side, order.type, order.time_in_force) == (
        "mine-31",
        "canceled",
        "sell",
        "stop",
        "day",
    )
    assert order.created_at == time_ns("1714572131.512893004")
    assert order.updated_at == time_ns("1714572191")
    trailing = msgspec.convert({"id": "32", "type": "TRAILING_STOP_LOSS"}, WireOrder)
    assert order_from_wire(trailing, "oanda") is None


@pytest.mark.parametrize(
    ("long", "short", "qty", "avg"),
    [
        ({"units": "1000", "averagePrice": "1.08"}, {"units": "0"}, Decimal(1000), Decimal("1.08")),
        ({"units": "0"}, {"units": "-300", "averagePrice": "1.09"}, Decimal(-300), Decimal("1.09")),
        # A hedging account holding both sides nets them.
        (
            {"units": "1000", "averagePrice": "1.08"},
            {"units": "-400", "averagePrice": "1.09"},
            Decimal(600),
            Decimal("1.08"),
        ),
    ],
)
def test_position_sides_net_to_a_signed_quantity(
    long: dict[str, str], short: dict[str, str], qty: Decimal, avg: Decimal
) -> None:
    wire = msgspec.convert(
        {"instrument": "EUR_USD", "long": long, "short": short, "pl": "3", "unrealizedPL": "-1.5"},
        WirePosition,
    )
    position = position_from_wire(wire, "oanda")
    assert position is not None
    assert (position.qty, position.avg_entry_price) == (qty, avg)
    assert (position.realized_pl, position.unrealized_pl) == (Decimal(3), Decimal("-1.5"))


def test_a_flat_position_is_none() -> None:
    wire = msgspec.convert(
        {"instrument": "EUR_USD", "long": {"units": "0"}, "short": {"units": "0"}}, WirePosition
    )
    assert position_from_wire(wire, "oanda") is None


def test_account_buying_power_is_what_the_free_margin_opens() -> None:
    wire = msgspec.convert(
        {
            "id": "1",
            "balance": "100000.0000",
            "NAV": "100050.0000",
            "marginAvailable": "99000.0000",
            "marginRate": "0.02",
            "currency": "EUR",
        },
        WireAccountSummary,
    )
    account = account_from_summary(wire, "oanda")
    assert (account.cash, account.equity, account.buying_power, account.currency) == (
        Decimal("100000"),
        Decimal("100050"),
        Decimal("4950000"),
        "EUR",
    )


def test_times_in_both_formats_agree() -> None:
    assert time_ns("2016-10-24T21:48:18.593753865Z") == time_ns("1477345698.593753865")
    assert time_ns("2016-10-24T23:48:18.5+02:00") == 1477345698_500000000
    assert time_ns("garbage", default=7) == 7
    assert time_ns(None) == 0


# -- v20 errors to ours ------------------------------------------------------------


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body or {})
    return httpx.Response(status, content=content, headers=headers)


def reject(reason: str, kind: str = "orderRejectTransaction") -> dict[str, Any]:
    return {
        kind: {"type": "MARKET_ORDER_REJECT", "id": "5", "rejectReason": reason},
        "errorCode": reason,
        "errorMessage": "The order was refused",
    }


@pytest.mark.parametrize(
    ("response", "error", "field"),
    [
        (reply(400, reject("INSUFFICIENT_MARGIN")), InsufficientFunds, None),
        (reply(400, reject("CLIENT_ORDER_ID_ALREADY_EXISTS")), DuplicateOrder, "client_order_id"),
        (reply(400, reject("UNITS_MIMIMUM_NOT_MET")), InvalidOrder, "qty"),
        (reply(400, reject("INSTRUMENT_NOT_TRADEABLE")), InvalidOrder, "symbol"),
        (reply(400, reject("PRICE_BOUND_INVALID")), InvalidOrder, "limit_price"),
        (reply(400, reject("PRICE_INVALID")), InvalidOrder, "stop_price"),
        (reply(400, reject("TIME_IN_FORCE_INVALID")), InvalidOrder, "time_in_force"),
        (reply(400, reject("CLIENT_ORDER_ID_INVALID")), InvalidOrder, "client_order_id"),
        (reply(400, reject("ACCOUNT_LOCKED")), InvalidOrder, None),
        (reply(400, reject("INTERNAL_SERVER_ERROR")), BrokerUnavailable, None),
        (
            reply(400, {"errorMessage": "Invalid value specified for 'order.instrument'"}),
            InvalidOrder,
            None,
        ),
        (
            reply(401, {"errorMessage": "Insufficient authorization to perform request."}),
            AuthFailed,
            None,
        ),
        (reply(403, {"errorMessage": "The provided request was forbidden."}), AuthFailed, None),
        (
            reply(404, reject("ORDER_DOESNT_EXIST", "orderCancelRejectTransaction")),
            NotFound,
            None,
        ),
        (
            reply(404, {"errorCode": "NO_SUCH_ORDER", "errorMessage": "no such order"}),
            NotFound,
            None,
        ),
        (reply(404, b"<html>not json</html>"), NotFound, None),
        (reply(405, {"errorMessage": "Method not allowed"}), Internal, None),
        (reply(429, {"errorMessage": "slow down"}), RateLimited, None),
        (reply(500, {"errorMessage": "boom"}), BrokerUnavailable, None),
        (reply(503, b"Service Unavailable"), BrokerUnavailable, None),
    ],
)
def test_statuses_and_reasons_map_onto_our_errors(
    response: httpx.Response, error: type[UltError], field: str | None
) -> None:
    mapped = error_from_response(
        response,
        broker="oanda",
        what="submit",
        request=request(type="stop", stop_price=Decimal(2), time_in_force="gtc"),
    )
    assert type(mapped) is error
    assert mapped.field == field
    assert mapped.broker == "oanda"
    assert not error.transient or error in (BrokerUnavailable, RateLimited)


def test_rate_limits_carry_retry_after() -> None:
    told = error_from_response(reply(429, {}, {"Retry-After": "5"}), broker="o", what="x")
    assert told.retry_after == 5.0
    untold = error_from_response(reply(429, {}), broker="o", what="x")
    assert untold.retry_after == 1.0


def test_network_failures_are_transient() -> None:
    refused = error_from_transport(httpx.ConnectError("refused"), broker="o", what="account")
    slow = error_from_transport(httpx.ReadTimeout("slow"), broker="o", what="account")
    assert "connection failed" in refused.message and "timed out" in slow.message
    assert refused.transient and slow.transient
