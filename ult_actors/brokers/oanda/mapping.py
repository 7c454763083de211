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
``clientExtensions.id`` carries our client order id; an order without one
reads with the client id ``oanda-<id>``.

Orders on a trade: a ``TAKE_PROFIT`` reads as a ``limit`` and a
``STOP_LOSS`` as a ``stop`` that close the trade (the other side, its
units), when they carry a client id (the exits of our brackets do); those
without one, and trailing stops, are not ours and are skipped.

Replace: v20's replace is a new order (new id) for the new terms; ours
sends what is left to fill (the new total less what the old order filled)
with the replacement's own client id (``replacement_request``). A bracket is
the entry with ``takeProfitOnFill`` and ``stopLossOnFill`` whose client
extensions carry the exits' client ids (``bracket_body``): v20 creates the
exits on the trade the entry's fill opens.

Cancel reasons decide the final state: ``TIME_IN_FORCE_EXPIRED`` is
``expired``; a client request, an immediate-or-cancel order finding no
liquidity or breaking its bound is ``canceled``; everything else (margin,
account locks, halted market, position limits) is ``rejected`` with the
reason kept in ``reject_reason``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from decimal import Decimal
from typing import Any

import msgspec

from ult_actors.brokers.oanda.wire import (
    WireAccountSummary,
    WireOnFill,
    WireOrder,
    WirePosition,
    WireTrade,
    WireTransaction,
    time_ns,
)
from ult_actors.errors import InvalidOrder
from ult_actors.messages import (
    Account,
    Fill,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    ReplaceRequest,
    TimeInForce,
)
from ult_actors.order_state import fill_of

INSTRUMENT_RE = re.compile(r"^[A-Z0-9]{2,10}_[A-Z0-9]{2,10}$")
#: v20 transaction types that create one of the four entry orders.
CREATE_TYPES = frozenset({"MARKET_ORDER", "LIMIT_ORDER", "STOP_ORDER", "MARKET_IF_TOUCHED_ORDER"})
ENTRY_ORDER_TYPES = frozenset({"MARKET", "LIMIT", "STOP", "MARKET_IF_TOUCHED"})
#: Orders on a trade that we read (as ``limit`` and ``stop``), and their create transactions.
EXIT_ORDER_TYPES: dict[str, OrderType] = {"TAKE_PROFIT": "limit", "STOP_LOSS": "stop"}
EXIT_CREATE_TYPES = frozenset(f"{t}_ORDER" for t in EXIT_ORDER_TYPES)

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
#: Time in force a take profit or stop loss may have.
_EXIT_TIFS = frozenset({"GTC", "GFD"})
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


def replacement_request(order: Order, change: ReplaceRequest) -> OrderRequest:
    """The order that replaces ``order`` at v20: its terms changed, for what is left to fill.

    ``change.qty`` is the new total, fills included; v20's replacement is a new
    order, so it asks for that total less what ``order`` has filled.
    """
    if change.client_order_id is None:
        raise InvalidOrder(
            "a replace needs the replacement's client_order_id", field="client_order_id"
        )
    total = order.qty if change.qty is None else change.qty
    left = total - order.filled_qty
    if left <= 0:
        raise InvalidOrder(
            f"qty {total} is not more than the {order.filled_qty} already filled", field="qty"
        )
    return OrderRequest(
        symbol=order.symbol,
        side=order.side,
        qty=left,
        type=order.type,
        time_in_force=change.time_in_force or order.time_in_force,
        limit_price=change.limit_price if change.limit_price is not None else order.limit_price,
        stop_price=change.stop_price if change.stop_price is not None else order.stop_price,
        client_order_id=change.client_order_id,
        broker=order.broker,
    )


def bracket_body(request: OrderListRequest) -> dict[str, Any]:
    """The entry's order body with its take profit and stop loss to create on its fill.

    The exits close the trade the entry opens, so they must be the entry's
    other side and its quantity; the take profit a ``limit``, the stop loss a
    ``stop`` (v20's stop loss has no limit price: ``stop_limit`` is refused).
    """
    entry, take, stop = request.legs
    body = order_body(entry)
    for leg, kind, price, key in (
        (take, "limit", take.limit_price, "takeProfitOnFill"),
        (stop, "stop", stop.stop_price, "stopLossOnFill"),
    ):
        if leg.type != kind:
            raise InvalidOrder(
                f"an OANDA bracket's {key.removesuffix('OnFill')} is a {kind} order,"
                f" not {leg.type}",
                field="type",
            )
        if leg.side == entry.side or leg.qty != entry.qty or leg.symbol != entry.symbol:
            raise InvalidOrder(
                "an OANDA bracket's exits close the entry's trade: the other side,"
                " the same symbol and qty",
                field="qty",
            )
        tif = _TIF_OUT["limit"].get(leg.time_in_force)
        if tif not in _EXIT_TIFS:
            raise InvalidOrder(
                f"an OANDA bracket's exits are gtc or day, not {leg.time_in_force}",
                field="time_in_force",
            )
        if leg.client_order_id is None:
            raise InvalidOrder("client_order_id is required", field="client_order_id")
        body["order"][key] = {
            "price": _price(price, "limit_price" if kind == "limit" else "stop_price"),
            "timeInForce": tif,
            "clientExtensions": {"id": leg.client_order_id},
        }
    return body


def exit_body(v20_type: str, trade_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A take profit or stop loss on ``trade_id`` with the terms of ``entry`` (an entry body).

    v20's exits have one price (the limit of a take profit, the trigger of a
    stop loss) and close the whole trade: no units, no instrument.
    """
    if entry["timeInForce"] not in _EXIT_TIFS:
        raise InvalidOrder(
            f"OANDA's take profits and stop losses are gtc or day, not {entry['timeInForce']}",
            field="time_in_force",
        )
    return {
        "order": {
            "type": v20_type,
            "tradeID": trade_id,
            "price": entry["price"],
            "timeInForce": entry["timeInForce"],
            "clientExtensions": entry["clientExtensions"],
        }
    }


def exit_order(
    txn_or_wire: WireTransaction | WireOrder,
    trade: WireTrade,
    broker: str,
    *,
    ts: int,
) -> Order | None:
    """A take profit or stop loss on ``trade`` as ours; ``None`` if not ours (no client id)."""
    kind = EXIT_ORDER_TYPES.get(txn_or_wire.type.removesuffix("_ORDER"))
    extensions = txn_or_wire.clientExtensions
    if kind is None or extensions is None or not extensions.id or txn_or_wire.id is None:
        return None
    price = txn_or_wire.price
    return Order(
        id=txn_or_wire.id,
        client_order_id=extensions.id,
        broker=broker,
        symbol=trade.instrument,
        side="sell" if trade.initialUnits > 0 else "buy",
        qty=abs(trade.initialUnits),
        type=kind,
        time_in_force=_TIF_IN.get(txn_or_wire.timeInForce or "", "gtc"),
        status="accepted",
        limit_price=price if kind == "limit" else None,
        stop_price=price if kind == "stop" else None,
        created_at=ts,
        updated_at=ts,
    )


def held_exits(wire: WireOrder, entry: Order) -> list[Order]:
    """The exits a pending entry carries (``takeProfitOnFill``, ``stopLossOnFill``), ``held``.

    Only those with a client id are ours (the exits of our brackets).
    """
    held = []
    exits: tuple[tuple[WireOnFill | None, OrderType], ...] = (
        (wire.takeProfitOnFill, "limit"),
        (wire.stopLossOnFill, "stop"),
    )
    for details, kind in exits:
        if details is None or details.clientExtensions is None or not details.clientExtensions.id:
            continue
        held.append(
            Order(
                id="",
                client_order_id=details.clientExtensions.id,
                broker=entry.broker,
                symbol=entry.symbol,
                side="sell" if entry.side == "buy" else "buy",
                qty=entry.qty,
                type=kind,
                time_in_force="gtc",
                status="held",
                limit_price=details.price if kind == "limit" else None,
                stop_price=details.price if kind == "stop" else None,
                created_at=entry.created_at,
                updated_at=entry.created_at,
            )
        )
    return held


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


def wire_client_id(wire: WireOrder) -> str:
    """The client order id of a v20 order (``oanda-<id>`` when it has none)."""
    return _client_id(wire.id, wire.clientExtensions)


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

    A v20 order fills once (an IOC may fill part, the rest is then
    cancelled), but ours may be several of v20's: a resting order filled in
    part is reissued for the rest under a new id, and it is still our order.
    """
    units = txn.units or Decimal(0)
    price = txn.fullVWAP if txn.fullVWAP is not None else txn.price
    fill = fill_of(
        order,
        fill_id=txn.id or "",
        qty=abs(units),
        price=price or Decimal(0),
        ts=time_ns(txn.time),
        commission=abs(txn.commission or Decimal(0)),
        side="buy" if units > 0 else "sell",
    )
    fees = fill_fees(txn)
    return msgspec.structs.replace(fill, fees=fees) if fees else fill


def fill_fees(txn: WireTransaction) -> dict[str, Decimal]:
    """What an ``ORDER_FILL`` charged besides its commission, named, positive a cost.

    v20 also reports ``halfSpreadCost``: an estimate of the spread already paid in the
    fill's price (slippage against the arrival mid measures it), never debited on its
    own, so it is no fee here and P&L is not charged it twice.
    """
    fees: dict[str, Decimal] = {}
    if txn.financing:
        fees["financing"] = -txn.financing  # v20 signs it as the balance moves
    if txn.guaranteedExecutionFee:
        fees["guaranteed_execution"] = txn.guaranteedExecutionFee
    return fees


def with_fills(order: Order, fills: Collection[Fill]) -> Order:
    """``order`` after all of its ``fills`` (each counted once, whatever order they came in)."""
    total = sum((f.qty for f in fills), Decimal(0))
    if not total:
        return order
    price = sum((f.qty * f.price for f in fills), Decimal(0)) / total
    filled = min(order.qty, total)
    return msgspec.structs.replace(
        order,
        status="filled" if filled >= order.qty else "partially_filled",
        filled_qty=filled,
        avg_fill_price=price,
        updated_at=max([order.updated_at, *(f.ts for f in fills)]),
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
