"""Our order model to Alpaca's request fields and back; every Alpaca status onto our state machine.

Alpaca has more order states than the gateway's one lifecycle. Each maps to
the state that says what may still happen to the order: anything that can
still fill is open (``accepted``, or ``partially_filled`` once something
filled), and only Alpaca's final states are final here. ``replaced`` is final
for that order id (the replacement is a new order with its own id); the
connector names the replacement (``replaced_by``) by its client order id.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Final

from ult_actors.brokers.alpaca.wire import WireAccount, WireOrder, WirePosition, optional_ns
from ult_actors.errors import InvalidOrder
from ult_actors.messages import (
    Account,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    ReplaceRequest,
    Side,
    TimeInForce,
)

#: Alpaca's documented limit on ``client_order_id``.
MAX_CLIENT_ORDER_ID = 48

#: Alpaca order ids are UUIDs; checking the shape keeps other text out of URL paths.
ORDER_ID_RE: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

#: Alpaca status -> ours, for orders with nothing filled yet.
STATUS_MAP: Final[dict[str, OrderStatus]] = {
    "pending_new": "pending_new",
    "accepted": "accepted",
    "new": "accepted",
    "accepted_for_bidding": "accepted",
    "pending_review": "accepted",
    "held": "held",  # a bracket's or oto's exit waiting for its entry to fill
    "stopped": "accepted",
    "suspended": "accepted",
    "calculated": "accepted",
    "done_for_day": "accepted",  # resumes next session (day orders expire instead)
    "pending_replace": "pending_replace",
    "partially_filled": "partially_filled",
    "filled": "filled",
    "pending_cancel": "pending_cancel",
    "canceled": "canceled",
    "replaced": "replaced",
    "expired": "expired",
    "rejected": "rejected",
}

_TYPES: Final[dict[str, OrderType]] = {
    "market": "market",
    "limit": "limit",
    "stop": "stop",
    "stop_limit": "stop_limit",
    # Not placed by the gateway, but may exist on the account: closest kind.
    "trailing_stop": "stop",
}

_TIFS: Final[frozenset[str]] = frozenset({"day", "gtc", "ioc", "fok", "opg", "cls"})


def decimal_text(value: Decimal) -> str:
    """A decimal as Alpaca wants it: a plain string, never exponent notation."""
    return format(value, "f")


def map_status(status: str, filled_qty: Decimal) -> OrderStatus:
    """Our status for an Alpaca status; an open order with fills is ``partially_filled``.

    An unknown (newer) status reads as open, so nothing is finalised by guess.
    """
    ours = STATUS_MAP.get(status, "accepted")
    if ours in ("accepted", "pending_new") and filled_qty > 0:
        return "partially_filled"
    return ours


def order_body(request: OrderRequest) -> dict[str, Any]:
    """The ``POST /v2/orders`` body for a request; ``InvalidOrder`` if Alpaca would refuse it."""
    coid = _client_order_id(request.client_order_id)
    if request.extended_hours and not (request.type == "limit" and request.time_in_force == "day"):
        raise InvalidOrder(
            "extended_hours needs a limit order with time_in_force day", field="extended_hours"
        )
    body: dict[str, Any] = {
        "symbol": request.symbol,
        "qty": decimal_text(request.qty),
        "side": request.side,
        "type": request.type,
        "time_in_force": request.time_in_force,
        "client_order_id": coid,
    }
    if request.limit_price is not None:
        body["limit_price"] = decimal_text(request.limit_price)
    if request.stop_price is not None:
        body["stop_price"] = decimal_text(request.stop_price)
    if request.extended_hours:
        body["extended_hours"] = True
    return body


def replace_body(order: Order, change: ReplaceRequest) -> dict[str, Any]:
    """The ``PATCH /v2/orders/{id}`` body replacing ``order``; ``InvalidOrder`` if nothing changes.

    Alpaca's replacement is a new order for the qty sent, else for the old
    order's whole qty even when part of it has filled: so the qty sent is
    what is left to fill (the new total less the fills), whenever that
    differs from the old order's qty.
    """
    body: dict[str, Any] = {"client_order_id": _client_order_id(change.client_order_id)}
    total = change.qty if change.qty is not None else order.qty
    left = total - order.filled_qty
    if left <= 0:
        raise InvalidOrder(
            f"qty {total} must exceed the {order.filled_qty} already filled", field="qty"
        )
    if left != order.qty:
        body["qty"] = decimal_text(left)
    if change.limit_price is not None:
        body["limit_price"] = decimal_text(change.limit_price)
    if change.stop_price is not None:
        body["stop_price"] = decimal_text(change.stop_price)
    if change.time_in_force is not None:
        body["time_in_force"] = change.time_in_force
    if len(body) == 1:
        raise InvalidOrder("nothing to change: give qty, limit_price, stop_price or time_in_force")
    return body


def _client_order_id(coid: str | None) -> str:
    if not coid:
        raise InvalidOrder("client_order_id is required", field="client_order_id")
    if len(coid) > MAX_CLIENT_ORDER_ID:
        raise InvalidOrder(
            f"client_order_id is {len(coid)} characters; Alpaca allows at most"
            f" {MAX_CLIENT_ORDER_ID}",
            field="client_order_id",
        )
    return coid


def to_order(wire: WireOrder, broker: str) -> Order:
    """Our ``Order`` for an Alpaca order object."""
    filled = wire.filled_qty or Decimal(0)
    status = map_status(wire.status, filled)
    kind = wire.type or wire.order_type or "market"
    side: Side = "sell" if wire.side == "sell" else "buy"
    tif: TimeInForce = wire.time_in_force if wire.time_in_force in _TIFS else "day"  # type: ignore[assignment]
    # A notional (dollar) order has no qty until it fills.
    qty = wire.qty if wire.qty is not None else filled
    reason = "rejected by Alpaca" if wire.status == "rejected" else None
    created = optional_ns(wire.created_at) or optional_ns(wire.submitted_at)
    return Order(
        id=wire.id,
        client_order_id=wire.client_order_id,
        broker=broker,
        symbol=wire.symbol or "",
        side=side,
        qty=qty,
        type=_TYPES.get(kind, "market"),
        time_in_force=tif,
        status=status,
        limit_price=wire.limit_price,
        stop_price=wire.stop_price,
        extended_hours=bool(wire.extended_hours),
        filled_qty=filled,
        avg_fill_price=wire.filled_avg_price if filled > 0 else None,
        created_at=created,
        updated_at=optional_ns(wire.updated_at) or created,
        reject_reason=reason,
    )


def to_position(wire: WirePosition, broker: str) -> Position:
    """Our ``Position`` for an Alpaca position (signed qty)."""
    return Position(
        broker=broker,
        symbol=wire.symbol,
        qty=wire.qty,
        avg_entry_price=wire.avg_entry_price,
        market_value=wire.market_value,
        unrealized_pl=wire.unrealized_pl,
    )


def to_account(wire: WireAccount, broker: str) -> Account:
    """Our ``Account`` for Alpaca's account object."""
    return Account(
        broker=broker,
        cash=wire.cash,
        buying_power=wire.buying_power,
        equity=wire.equity,
        currency=wire.currency or "USD",
    )
