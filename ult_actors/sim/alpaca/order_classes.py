"""Alpaca's order classes as the simulator checks them: the exits of bracket, oco and oto orders.

A ``bracket`` is an entry with a take-profit limit and a stop-loss stop (or
stop-limit) that wait (``held``) until the entry has filled completely; an
``oto`` is an entry with one of them; an ``oco`` is an exit-only pair on a
position, a take-profit limit (the order itself) with a stop-loss leg.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ult_actors.sim.alpaca.checks import invalid, price_field

ORDER_CLASSES = frozenset({"simple", "bracket", "oco", "oto"})
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Exit:
    """One exit of an order class: its order type and prices."""

    type: str
    limit_price: Decimal | None
    stop_price: Decimal | None


@dataclass(frozen=True)
class Exits:
    """The exits a request asks for (``None``: not asked)."""

    take_profit: Exit | None
    stop_loss: Exit | None


def order_class_of(body: dict[str, Any]) -> str:
    """The request's order class; ``""`` and absent mean ``simple``."""
    order_class = body.get("order_class") or "simple"
    if order_class not in ORDER_CLASSES:
        raise invalid(f"invalid order_class {order_class!r}: expected simple, bracket, oco or oto")
    return str(order_class)


def exits_of(
    body: dict[str, Any], *, order_class: str, side: str, kind: str, tif: str, base: Decimal
) -> Exits:
    """Check ``take_profit`` / ``stop_loss`` against the class and the entry (``base``: its price).

    For an oco, ``side`` is the side of both exits and ``base`` is unused;
    for a bracket or oto the exits close the entry's position, so they sit
    on either side of ``base``, a cent or more away.
    """
    take_profit = _take_profit(body.get("take_profit"))
    stop_loss = _stop_loss(body.get("stop_loss"))
    if order_class == "simple":
        if take_profit or stop_loss:
            raise invalid("take_profit and stop_loss need order_class bracket, oco or oto")
        return Exits(None, None)
    if body.get("notional") is not None:
        raise invalid(f"{order_class} orders need qty, not notional")
    if tif not in ("day", "gtc"):
        raise invalid(f"{order_class} orders must be day or gtc")
    if body.get("extended_hours"):
        raise invalid(f"{order_class} orders cannot be extended hours orders")
    if order_class in ("bracket", "oco") and (take_profit is None or stop_loss is None):
        raise invalid(
            f"{order_class} orders require take_profit.limit_price and stop_loss.stop_price"
        )
    if order_class == "oto" and (take_profit is None) == (stop_loss is None):
        raise invalid("oto orders require exactly one of take_profit or stop_loss")
    if order_class == "oco":
        if kind != "limit":
            raise invalid("oco orders must be limit orders")
        assert take_profit is not None and stop_loss is not None
        # Both exits close one position: a sell takes its profit above its stop, a buy below.
        up = side == "sell"
        if not _beyond(take_profit.limit_price, stop_loss.stop_price, up):
            where = "above" if up else "below"
            raise invalid(f"take_profit.limit_price must be {where} stop_loss.stop_price")
        return Exits(take_profit, stop_loss)
    # The exits close the entry's position: a long one takes its profit above the entry, a
    # short one below, and stops out on the other side.
    up = side == "buy"
    sign = "+" if up else "-"
    if take_profit is not None and not _beyond(take_profit.limit_price, base, up):
        raise invalid(f"take_profit.limit_price must be {'>=' if up else '<='} {base} {sign} 0.01")
    if stop_loss is not None and not _beyond(stop_loss.stop_price, base, not up):
        other = "-" if up else "+"
        raise invalid(f"stop_loss.stop_price must be {'<=' if up else '>='} {base} {other} 0.01")
    return Exits(take_profit, stop_loss)


def _beyond(price: Decimal | None, base: Decimal | None, above: bool) -> bool:
    """``price`` a cent or more above ``base`` (below it when not ``above``)."""
    assert price is not None and base is not None
    return price >= base + _CENT if above else price <= base - _CENT


def _take_profit(value: Any) -> Exit | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("take_profit must be an object with limit_price")
    limit = price_field(value.get("limit_price"), "take_profit.limit_price")
    if limit is None:
        raise invalid("take_profit.limit_price is required")
    return Exit("limit", limit, None)


def _stop_loss(value: Any) -> Exit | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("stop_loss must be an object with stop_price")
    stop = price_field(value.get("stop_price"), "stop_loss.stop_price")
    if stop is None:
        raise invalid("stop_loss.stop_price is required")
    limit = price_field(value.get("limit_price"), "stop_loss.limit_price")
    return Exit("stop" if limit is None else "stop_limit", limit, stop)
