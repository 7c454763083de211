"""Our orders to v20 order requests, and v20 orders and transactions back.

Symbols: our symbol *is* the v20 instrument name, ``BASE_QUOTE`` in
upper case (``EUR_USD``, ``USD_JPY``, ``XAU_USD``, ``DE30_EUR``); other
spellings (``EUR/USD``) are refused with ``InvalidOrder(field="symbol")``
rather than guessed at.

Quantities: ``units`` is a signed decimal string, positive to buy and
negative to sell; ``qty`` is its absolute value.

Order types we send:

==============  =============================================================
ours            v20
==============  =============================================================
``market``      ``MARKET`` (time in force ``FOK``/``IOC``; ``day``/``gtc``
                become ``FOK``, v20's default: a market order never rests)
``limit``       ``LIMIT`` at ``limit_price``
``stop``        ``STOP`` at ``stop_price``
``stop_limit``  ``STOP`` at ``stop_price`` with ``priceBound = limit_price``:
                once triggered it fills at market only within the bound, and
                is cancelled (``BOUNDS_VIOLATION``) instead of resting as a
                limit. v20 has no resting stop-limit; this is its nearest.
==============  =============================================================

Time in force: ``gtc`` -> ``GTC``, ``day`` -> ``GFD``, ``ioc`` -> ``IOC``,
``fok`` -> ``FOK``; ``opg``/``cls`` do not exist at OANDA and are refused
(``field="time_in_force"``). ``GTD`` needs an expiry time our requests do not
carry, so we never send it.

Read back (orders placed elsewhere on the account): ``MARKET_IF_TOUCHED``
reads as ``limit`` at its price (both wait for the price to come to them),
``GTD`` as ``gtc``, ``STOP`` with a ``priceBound`` as ``stop_limit``.
Dependent orders (take profit, stop loss, trailing stop) are not ours and are
skipped. ``clientExtensions.id`` carries our client order id; an order
without one reads with the client id ``oanda-<id>``.

Cancel reasons decide the final state: ``TIME_IN_FORCE_EXPIRED`` is
``expired``; a client request, an immediate-or-cancel order finding no
liquidity or breaking its bound is ``canceled``; everything else (margin,
account locks, halted market, position limits) is ``rejected`` with the
reason kept in ``reject_reason``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec

from ult_actors.brokers.oanda.wire import (
    WireAccountSummary,
    WireOrder,
    WirePosition,
    WireTransaction,
    time_ns,
)
from ult_actors.errors import InvalidOrder
from ult_actors.messages import (
    Account,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    TimeInForce,
)
from ult_actors.order_state import fill_of

INSTRUMENT_RE = re.compile(r"^[A-Z0-9]{2,10}_[A-Z0-9]{2,10}$")
#: v20 transaction types that create one of the four entry orders.
CREATE_TYPES = frozenset({"MARKET_ORDER", "LIMIT_ORDER", "STOP_ORDER", "MARKET_IF_TOUCHED_ORDER"})
ENTRY_ORDER_TYPES = frozenset({"MARKET", "LIMIT", "STOP", "MARKET_IF_TOUCHED"})

_TIF_OUT: dict[str, dict[str, str]] = {
    "market": {"fok": "FOK", "ioc": "IOC", "day": "FOK", "gtc": "FOK"},
    "limit": {"gtc": "GTC", "day": "GFD", "ioc": "IOC", "fok": "FOK"},
    "stop": {"gtc": "GTC", "day": "GFD", "ioc": "IOC", "fok": "FOK"},
    "stop_limit": {"gtc": "GTC", "day": "GFD", "ioc": "IOC", "fok": "FOK"},
}
_TIF_IN: dict[str, TimeInForce] = {
    "FOK": "fok",
    "IOC": "ioc",
    "GTC": "gtc",
    "GFD": "day",
    "GTD": "gtc",
}
_CANCELED_REASONS = frozenset(
    {
        "CLIENT_REQUEST",
        "CLIENT_REQUEST_REPLACED",
        "LINKED_TRADE_CLOSED",
        "INSUFFICIENT_LIQUIDITY",
        "BOUNDS_VIOLATION",
        "MIGRATION",
    }
)


def check_symbol(symbol: str) -> None:
    """``InvalidOrder`` unless ``symbol`` is a v20 instrument name."""
    if not INSTRUMENT_RE.match(symbol):
        raise InvalidOrder(
            f"symbol {symbol!r} is not an OANDA instrument; use BASE_QUOTE, e.g. EUR_USD",
            field="symbol",
        )


def units_text(value: Decimal) -> str:
    """Signed units as v20 wants them: whole numbers without a decimal point."""
    if value == value.to_integral_value():
        return str(int(value))
    return f"{value.normalize():f}"


def order_body(request: OrderRequest) -> dict[str, Any]:
    """The ``{"order": {...}}`` body of ``POST .../orders`` for ``request``."""
    check_symbol(request.symbol)
    if request.extended_hours:
        raise InvalidOrder(
            "OANDA trades around the clock on weekdays; extended_hours does not apply",
            field="extended_hours",
        )
    tif = _TIF_OUT[request.type].get(request.time_in_force)
    if tif is None:
        raise InvalidOrder(
            f"time_in_force {request.time_in_force} does not exist at OANDA"
            f" (use {', '.join(sorted(_TIF_OUT[request.type]))})",
            field="time_in_force",
        )
    if request.client_order_id is None:
        raise InvalidOrder("client_order_id is required", field="client_order_id")
    units = request.qty if request.side == "buy" else -request.qty
    order: dict[str, Any] = {
        "type": "MARKET"
        if request.type == "market"
        else "LIMIT"
        if request.type == "limit"
        else "STOP",
        "instrument": request.symbol,
        "units": units_text(units),
        "timeInForce": tif,
        "positionFill": "DEFAULT",
        "clientExtensions": {"id": request.client_order_id},
    }
    if request.type == "limit":
        order["price"] = _price(request.limit_price, "limit_price")
    elif request.type in ("stop", "stop_limit"):
        order["price"] = _price(request.stop_price, "stop_price")
        if request.type == "stop_limit":
            order["priceBound"] = _price(request.limit_price, "limit_price")
    return {"order": order}


def _price(value: Decimal | None, field: str) -> str:
    if value is None:
        raise InvalidOrder(f"{field} is required", field=field)
    return f"{value:f}"


def _our_type(
    v20_type: str, price: Decimal | None, bound: Decimal | None
) -> tuple[OrderType, Decimal | None, Decimal | None] | None:
    """(type, limit_price, stop_price) for a v20 entry order type; ``None`` if not ours."""
    if v20_type == "MARKET":
        return "market", None, None
    if v20_type in ("LIMIT", "MARKET_IF_TOUCHED"):
        return "limit", price, None
    if v20_type == "STOP":
        return ("stop_limit", bound, price) if bound is not None else ("stop", None, price)
    return None


#: The client order id of an order placed without one (e.g. on OANDA's own platform).
SYNTHETIC_CLIENT_ID_PREFIX = "oanda-"


def _client_id(order_id: str, extensions: Any) -> str:
    client_id = getattr(extensions, "id", None)
    return client_id if client_id else f"{SYNTHETIC_CLIENT_ID_PREFIX}{order_id}"


def order_from_wire(wire: WireOrder, broker: str) -> Order | None:
    """A v20 order as ours, before fills and cancel reasons are applied; ``None`` if not ours."""
    mapped = _our_type(wire.type, wire.price, wire.priceBound)
    if mapped is None:
        return None
    kind, limit, stop = mapped
    created = time_ns(wire.createTime)
    status: OrderStatus = (
        "filled"
        if wire.state == "FILLED"
        else ("canceled" if wire.state == "CANCELLED" else "accepted")
    )
    return Order(
        id=wire.id,
        client_order_id=_client_id(wire.id, wire.clientExtensions),
        broker=broker,
        symbol=wire.instrument,
        side="buy" if wire.units > 0 else "sell",
        qty=abs(wire.units),
        type=kind,
        time_in_force=_TIF_IN.get(wire.timeInForce, "gtc"),
        status=status,
        limit_price=limit,
        stop_price=stop,
        created_at=created,
        updated_at=max(created, time_ns(wire.filledTime), time_ns(wire.cancelledTime)),
    )


def order_from_create(txn: WireTransaction, broker: str) -> Order | None:
    """An ``*_ORDER`` create transaction as an accepted order; ``None`` if not ours."""
    if txn.type not in CREATE_TYPES or txn.id is None or txn.units is None:
        return None
    mapped = _our_type(txn.type.removesuffix("_ORDER"), txn.price, txn.priceBound)
    if mapped is None:
        return None
    kind, limit, stop = mapped
    ts = time_ns(txn.time)
    return Order(
        id=txn.id,
        client_order_id=_client_id(txn.id, txn.clientExtensions),
        broker=broker,
        symbol=txn.instrument or "",
        side="buy" if txn.units > 0 else "sell",
        qty=abs(txn.units),
        type=kind,
        time_in_force=_TIF_IN.get(txn.timeInForce or "", "gtc"),
        status="accepted",
        limit_price=limit,
        stop_price=stop,
        created_at=ts,
        updated_at=ts,
    )


def fill_from(txn: WireTransaction, order: Order) -> Fill:
    """An ``ORDER_FILL`` transaction as our fill of ``order``.

    A v20 order fills in one ``ORDER_FILL`` (an IOC may fill part, the rest
    is then cancelled), so the fill's units are the order's filled quantity.
    """
    units = txn.units or Decimal(0)
    price = txn.fullVWAP if txn.fullVWAP is not None else txn.price
    return fill_of(
        order,
        fill_id=txn.id or "",
        qty=abs(units),
        price=price or Decimal(0),
        ts=time_ns(txn.time),
        commission=abs(txn.commission or Decimal(0)),
        side="buy" if units > 0 else "sell",
    )


def with_fill(order: Order, fill: Fill) -> Order:
    """``order`` after ``fill``."""
    filled = min(order.qty, fill.qty)
    return msgspec.structs.replace(
        order,
        status="filled" if filled >= order.qty else "partially_filled",
        filled_qty=filled,
        avg_fill_price=fill.price,
        updated_at=max(order.updated_at, fill.ts),
    )


def status_for_cancel(reason: str | None, filled_qty: Decimal = Decimal(0)) -> OrderStatus:
    """Our final state for a v20 ``ORDER_CANCEL`` with this reason."""
    if reason == "TIME_IN_FORCE_EXPIRED":
        return "expired"
    if reason in _CANCELED_REASONS or reason is None or filled_qty > 0:
        return "canceled"
    return "rejected"


def with_cancel(order: Order, reason: str | None, ts: int) -> Order:
    """``order`` after a cancel with ``reason`` (kept unless the client asked for it)."""
    return msgspec.structs.replace(
        order,
        status=status_for_cancel(reason, order.filled_qty),
        reject_reason=None if reason in (None, "CLIENT_REQUEST") else reason,
        updated_at=max(order.updated_at, ts),
    )


def position_from_wire(wire: WirePosition, broker: str) -> Position | None:
    """A v20 position with its long and short sides netted; ``None`` if flat.

    v20 reports the short side's units as a negative number, so the net is
    their sum. The average entry is the side that is left (on a hedging
    account with both sides open, the larger side's).
    """
    net = wire.long.units + wire.short.units
    if net == 0:
        return None
    side = wire.long if abs(wire.long.units) >= abs(wire.short.units) else wire.short
    return Position(
        broker=broker,
        symbol=wire.instrument,
        qty=net,
        avg_entry_price=side.averagePrice or Decimal(0),
        unrealized_pl=wire.unrealizedPL,
        realized_pl=wire.pl,
    )


def account_from_summary(wire: WireAccountSummary, broker: str) -> Account:
    """Balance as cash, NAV as equity, and buying power as the notional the free margin buys.

    ``marginAvailable`` is collateral; at ``marginRate`` (e.g. 0.02 for 50:1)
    it opens ``marginAvailable / marginRate`` of position value, which is
    what buying power means for the other brokers.
    """
    rate = wire.marginRate
    power = wire.marginAvailable / rate if rate else wire.marginAvailable
    return Account(
        broker=broker,
        cash=wire.balance,
        buying_power=power,
        equity=wire.NAV,
        currency=wire.currency,
    )
