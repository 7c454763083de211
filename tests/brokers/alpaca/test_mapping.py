"""Alpaca <-> gateway mapping: order fields, every status, decimals, timestamps, and error codes."""

from __future__ import annotations

from decimal import Decimal

import httpx
import msgspec
import pytest

from ult_actors.brokers.alpaca.errors import error_from_response, retry_after_s
from ult_actors.brokers.alpaca.mapping import (
    STATUS_MAP,
    map_status,
    order_body,
    to_account,
    to_order,
    to_position,
)
from ult_actors.brokers.alpaca.wire import (
    WireAccount,
    WireOrder,
    WirePosition,
    ns_to_rfc3339,
    rfc3339_to_ns,
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
from ult_actors.messages import OPEN_STATUSES, TERMINAL_STATUSES, OrderRequest

# Every value of alpaca-py's OrderStatus enum, with what it must mean to us.
ALPACA_STATUSES = {
    "new": "accepted",
    "partially_filled": "partially_filled",
    "filled": "filled",
    "done_for_day": "accepted",
    "canceled": "canceled",
    "expired": "expired",
    "replaced": "replaced",
    "pending_cancel": "pending_cancel",
    "pending_replace": "pending_replace",
    "pending_review": "accepted",
    "accepted": "accepted",
    "pending_new": "pending_new",
    "accepted_for_bidding": "accepted",
    "stopped": "accepted",
    "rejected": "rejected",
    "suspended": "accepted",
    "calculated": "accepted",
    "held": "held",
}

ORDER_JSON = b"""{
  "id": "3f1c2b7e-5d0a-4c9e-9a51-2b8f6e0d7c41",
  "client_order_id": "gw-20240501-000017",
  "created_at": "2024-05-01T14:02:11.512893123Z",
  "updated_at": "2024-05-01T10:02:11.804417-04:00",
  "submitted_at": "2024-05-01T14:02:11.509120Z",
  "filled_at": null, "expired_at": null, "canceled_at": null, "failed_at": null,
  "replaced_at": null, "replaced_by": null, "replaces": null,
  "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
  "symbol": "AAPL", "asset_class": "us_equity",
  "notional": null, "qty": "25", "filled_qty": "10", "filled_avg_price": "168.4100",
  "order_class": "simple", "order_type": "limit", "type": "limit",
  "side": "buy", "time_in_force": "day",
  "limit_price": "168.45", "stop_price": null,
  "status": "partially_filled", "extended_hours": false, "legs": null,
  "trail_percent": null, "trail_price": null, "hwm": null, "position_intent": "buy_to_open"
}"""


def wire_order(**changes: object) -> WireOrder:
    return msgspec.structs.replace(msgspec.json.decode(ORDER_JSON, type=WireOrder), **changes)


@pytest.mark.parametrize(("alpaca", "ours"), sorted(ALPACA_STATUSES.items()))
def test_every_alpaca_status_maps_onto_our_state_machine(alpaca: str, ours: str) -> None:
    assert map_status(alpaca, Decimal(0)) == ours
    assert ours in OPEN_STATUSES | TERMINAL_STATUSES


def test_status_table_covers_every_documented_status() -> None:
    assert set(STATUS_MAP) == set(ALPACA_STATUSES)


@pytest.mark.parametrize("alpaca", ["new", "accepted", "done_for_day", "pending_new"])
def test_an_open_order_with_fills_is_partially_filled(alpaca: str) -> None:
    assert map_status(alpaca, Decimal("1")) == "partially_filled"


def test_final_alpaca_states_are_final_for_us() -> None:
    for alpaca in ("filled", "canceled", "expired", "rejected", "replaced"):
        assert map_status(alpaca, Decimal(1)) in TERMINAL_STATUSES


def test_an_unknown_new_status_reads_as_open_never_final() -> None:
    assert map_status("some_future_state", Decimal(0)) == "accepted"
    assert map_status("some_future_state", Decimal(2)) == "partially_filled"


def test_order_object_maps_with_exact_decimals_and_nanosecond_times() -> None:
    order = to_order(wire_order(), "alpaca")
    assert order.id == "3f1c2b7e-5d0a-4c9e-9a51-2b8f6e0d7c41"
    assert order.client_order_id == "gw-20240501-000017"
    assert order.broker == "alpaca"
    assert (order.symbol, order.side, order.type, order.time_in_force) == (
        "AAPL",
        "buy",
        "limit",
        "day",
    )
    assert order.status == "partially_filled"
    assert order.qty == Decimal("25")
    assert order.filled_qty == Decimal("10")
    assert str(order.avg_fill_price) == "168.4100"  # the broker's digits, not a float's
    assert str(order.limit_price) == "168.45"
    assert order.created_at == rfc3339_to_ns("2024-05-01T14:02:11Z") + 512_893_123
    # -04:00 offsets are converted to UTC.
    assert order.updated_at == rfc3339_to_ns("2024-05-01T14:02:11.804417Z")


def test_numbers_sent_as_json_numbers_stay_exact() -> None:
    raw = ORDER_JSON.replace(b'"filled_avg_price": "168.4100"', b'"filled_avg_price": 0.1')
    order = to_order(msgspec.json.decode(raw, type=WireOrder), "alpaca")
    assert order.avg_fill_price == Decimal("0.1")


def test_a_replaced_order_is_final_and_a_held_leg_is_open_not_working() -> None:
    replaced = to_order(wire_order(status="replaced", replaced_by="abc"), "alpaca")
    assert (replaced.status, replaced.reject_reason) == ("replaced", None)
    held = to_order(wire_order(status="held", filled_qty=Decimal(0)), "alpaca")
    assert held.status == "held" and held.status in OPEN_STATUSES


def test_notional_and_trailing_orders_from_elsewhere_still_map() -> None:
    order = to_order(
        wire_order(qty=None, notional=Decimal("500"), type="trailing_stop", filled_qty=None),
        "alpaca",
    )
    assert order.qty == 0 and order.filled_qty == 0 and order.type == "stop"
    assert order.avg_fill_price is None


def test_request_becomes_alpaca_body_with_plain_decimal_strings() -> None:
    body = order_body(
        OrderRequest(
            symbol="AAPL",
            side="buy",
            qty=Decimal("1E+1"),
            type="stop_limit",
            limit_price=Decimal("187.250"),
            stop_price=Decimal("0.0001"),
            time_in_force="gtc",
            client_order_id="c-1",
        )
    )
    assert body == {
        "symbol": "AAPL",
        "qty": "10",
        "side": "buy",
        "type": "stop_limit",
        "time_in_force": "gtc",
        "client_order_id": "c-1",
        "limit_price": "187.250",
        "stop_price": "0.0001",
    }


def test_extended_hours_only_for_day_limit_orders() -> None:
    ok = order_body(
        OrderRequest(
            symbol="AAPL",
            side="buy",
            qty=Decimal(1),
            type="limit",
            limit_price=Decimal(1),
            extended_hours=True,
            client_order_id="c-2",
        )
    )
    assert ok["extended_hours"] is True
    for kind, tif in (("market", "day"), ("limit", "gtc")):
        with pytest.raises(InvalidOrder) as err:
            order_body(
                OrderRequest(
                    symbol="AAPL",
                    side="buy",
                    qty=Decimal(1),
                    type=kind,  # type: ignore[arg-type]
                    limit_price=Decimal(1) if kind == "limit" else None,
                    time_in_force=tif,  # type: ignore[arg-type]
                    extended_hours=True,
                    client_order_id="c-3",
                )
            )
        assert err.value.field == "extended_hours"


def test_client_order_id_must_fit_alpacas_limit() -> None:
    request = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="x" * 49)
    with pytest.raises(InvalidOrder) as err:
        order_body(request)
    assert err.value.field == "client_order_id"
    assert order_body(msgspec.structs.replace(request, client_order_id="x" * 48))


def test_position_and_account_keep_sign_and_digits() -> None:
    position = to_position(
        WirePosition(
            symbol="TSLA",
            qty=Decimal("-3"),
            avg_entry_price=Decimal("175.5050"),
            market_value=Decimal("-526.50"),
        ),
        "alpaca",
    )
    assert position.qty == Decimal("-3") and str(position.avg_entry_price) == "175.5050"
    account = to_account(
        WireAccount(
            cash=Decimal("48210.17"), buying_power=Decimal("96420.34"), equity=Decimal("1.10")
        ),
        "alpaca",
    )
    assert (str(account.cash), str(account.buying_power), str(account.equity)) == (
        "48210.17",
        "96420.34",
        "1.10",
    )


def test_timestamps_round_trip_at_nanosecond_precision() -> None:
    ns = 1_714_572_131_512_893_123
    assert rfc3339_to_ns(ns_to_rfc3339(ns)) == ns
    with pytest.raises(ValueError):
        rfc3339_to_ns("yesterday")


# -- errors -------------------------------------------------------------------

NOW_NS = 1_700_000_000 * 1_000_000_000


def response(status: int, body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, b'{"code":40110000,"message":"request is not authorized"}', AuthFailed),
        (403, b'{"message": "forbidden."}', AuthFailed),
        (403, b'{"code":40310000,"message":"insufficient buying power"}', InsufficientFunds),
        (
            403,
            b'{"code":40310000,"message":"insufficient qty available for order'
            b' (requested: 10, available: 2)"}',
            InsufficientFunds,
        ),
        (403, b'{"code":40310000,"message":"account is not allowed to short"}', InvalidOrder),
        (404, b'{"code":40410000,"message":"order not found"}', NotFound),
        (422, b'{"code":40010001,"message":"client_order_id must be unique"}', DuplicateOrder),
        (422, b'{"code":42210000,"message":"qty must be > 0"}', InvalidOrder),
        (400, b'{"code":40010000,"message":"request body format is invalid"}', InvalidOrder),
        (429, b'{"code":42910000,"message":"rate limit exceeded"}', RateLimited),
        (500, b'{"code":50010000,"message":"internal server error"}', BrokerUnavailable),
        (502, b"<html><body>502 Bad Gateway</body></html>", BrokerUnavailable),
        (503, b"", BrokerUnavailable),
        (418, b"{}", Internal),
    ],
)
def test_each_http_status_maps_to_our_error_code(
    status: int, body: bytes, expected: type[UltError]
) -> None:
    error = error_from_response(response(status, body), broker="alpaca", now_ns=NOW_NS)
    assert type(error) is expected
    assert error.broker == "alpaca"
    assert f"HTTP {status}" in error.message or status == 429


def test_422_names_the_field_alpaca_complains_about() -> None:
    body = b'{"code":42210000,"message":"limit_price is required for limit orders"}'
    error = error_from_response(response(422, body), broker="alpaca", now_ns=NOW_NS)
    assert isinstance(error, InvalidOrder) and error.field == "limit_price"


def test_retry_after_comes_from_retry_after_or_the_reset_header() -> None:
    assert retry_after_s({"retry-after": "2.5"}, NOW_NS) == 2.5
    assert retry_after_s({"retry-after": "Tue, 14 Nov 2023 22:13:24 GMT"}, NOW_NS) == 4.0
    reset = str(NOW_NS // 1_000_000_000 + 7)
    assert retry_after_s({"x-ratelimit-reset": reset}, NOW_NS) == 7.0
    assert retry_after_s({}, NOW_NS) is None
    error = error_from_response(
        response(429, b"{}", **{"X-RateLimit-Reset": reset}), broker="alpaca", now_ns=NOW_NS
    )
    assert isinstance(error, RateLimited) and error.retry_after == 7.0
