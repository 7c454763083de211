"""What both clients share: building requests from method arguments, reading replies."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TypeVar

from ult_actors.errors import Internal, InvalidOrder, from_info
from ult_actors.messages import (
    ErrorReply,
    OrderRequest,
    OrderType,
    Reply,
    Side,
    TimeInForce,
)

R = TypeVar("R")

#: What a quantity or price may be given as: never a float, which cannot hold 0.1 exactly.
Number = Decimal | int | str


def to_decimal(name: str, value: Number) -> Decimal:
    """A number argument as a ``Decimal``; ``InvalidOrder`` naming the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidOrder(
            f"{name} must be a str, int or Decimal, not {type(value).__name__}"
            " (floats cannot hold prices exactly)",
            field=name,
        )
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise InvalidOrder(f"{name} {value!r} is not a number", field=name) from None
    if not result.is_finite():
        raise InvalidOrder(f"{name} must be a finite number", field=name)
    return result


def order_request(
    symbol: str,
    side: Side,
    qty: Number,
    *,
    type: OrderType = "market",
    limit_price: Number | None = None,
    stop_price: Number | None = None,
    time_in_force: TimeInForce = "day",
    extended_hours: bool = False,
    broker: str | None = None,
    client_order_id: str | None = None,
) -> OrderRequest:
    """An ``OrderRequest`` from friendly arguments (prices may be strings)."""
    return OrderRequest(
        symbol=symbol,
        side=side,
        qty=to_decimal("qty", qty),
        type=type,
        limit_price=None if limit_price is None else to_decimal("limit_price", limit_price),
        stop_price=None if stop_price is None else to_decimal("stop_price", stop_price),
        time_in_force=time_in_force,
        extended_hours=extended_hours,
        broker=broker,
        client_order_id=client_order_id,
    )


def expect(reply: Reply, kind: type[R]) -> R:
    """The reply if it is a ``kind``; the matching ``UltError`` if it is an error."""
    if isinstance(reply, ErrorReply):
        raise from_info(reply.error)
    if not isinstance(reply, kind):
        raise Internal(f"expected a {kind.__name__} from the service, got {type(reply).__name__}")
    return reply
