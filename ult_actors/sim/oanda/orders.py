"""v20 order requests: checking one, the order record it becomes, and its terms as v20 writes them.

``parse_order`` applies v20's rules to the ``order`` object of ``POST
.../orders`` and returns a ``SimOrder``, or raises ``Reject`` with the
``rejectReason`` OANDA would give (``UNITS_PRECISION_EXCEEDED``,
``TIME_IN_FORCE_INVALID``, ``CLIENT_ORDER_ID_ALREADY_EXISTS`` ...);
``parse_dependent`` does the same for a take profit, stop loss or trailing
stop on a trade, ``parse_on_fill`` for the ones an entry asks for on its
fill. ``order_fields`` renders an order's terms.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ult_actors.sim.oanda.prices import Instrument
from ult_actors.sim.oanda.wire import parse_time, units

ORDER_TYPES = ("MARKET", "LIMIT", "STOP", "MARKET_IF_TOUCHED")
#: Orders that close one trade when the price reaches them.
DEPENDENT_TYPES = ("TAKE_PROFIT", "STOP_LOSS", "TRAILING_STOP_LOSS")
_TIFS_BY_TYPE = {
    "MARKET": ("FOK", "IOC"),
    "LIMIT": ("GTC", "GTD", "GFD", "FOK", "IOC"),
    "STOP": ("GTC", "GTD", "GFD", "FOK", "IOC"),
    "MARKET_IF_TOUCHED": ("GTC", "GTD", "GFD"),
}
_POSITION_FILLS = ("DEFAULT", "OPEN_ONLY", "REDUCE_FIRST", "REDUCE_ONLY")
_TRIGGER_CONDITIONS = ("DEFAULT", "INVERSE", "BID", "ASK", "MID")
MAX_UNITS = Decimal(100_000_000)
_MAX_PENDING = 500
MAX_CLIENT_ID = 128


class Reject(Exception):
    """v20 refuses the order request: ``reason`` is its ``rejectReason``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class SimOrder:
    """A v20 order: one of the four entry types, or one that closes a trade."""

    id: str
    type: str
    instrument: str
    units: Decimal
    price: Decimal | None
    price_bound: Decimal | None
    time_in_force: str
    gtd_ns: int | None
    position_fill: str
    trigger_condition: str
    client_extensions: dict[str, str] | None
    create_ns: int
    state: str = "PENDING"
    filling_txn: str | None = None
    filled_ns: int | None = None
    trade_opened: str | None = None
    trade_reduced: str | None = None
    trades_closed: list[str] = field(default_factory=list)
    cancelling_txn: str | None = None
    cancelled_ns: int | None = None
    #: A position closeout order: ``("long" | "short", units asked: "ALL" or a number)``.
    closeout: tuple[str, str] | None = None
    #: Dependent orders (take profit, stop loss, trailing stop): the trade they close.
    trade_id: str | None = None
    #: Stop loss by distance, trailing stop: the distance from the price.
    distance: Decimal | None = None
    #: Trailing stop: the price it triggers at now (moves with the market, never back).
    trailing_value: Decimal | None = None
    #: Entry orders: the ``takeProfitOnFill``-style details, checked, keyed by field name.
    on_fill: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The fill transaction that created this order (orders made on a fill).
    made_by_fill: str | None = None
    replaces: str | None = None
    replaced_by: str | None = None


@dataclass
class SimTrade:
    """A v20 trade: units opened by one fill, reduced FIFO by later fills."""

    id: str
    instrument: str
    price: Decimal
    open_ns: int
    initial_units: Decimal
    current_units: Decimal
    realized_pl: Decimal = Decimal(0)
    close_ns: int | None = None
    closing_txns: list[str] = field(default_factory=list)


def parse_order(
    spec: dict[str, Any],
    order_type: str,
    *,
    instruments: dict[str, Instrument],
    client_ids: Container[str],
    pending: int,
    now_ns: int,
) -> SimOrder:
    """The order a v20 order request asks for; ``Reject`` with v20's reason if it cannot be."""
    name = spec.get("instrument")
    if not name:
        raise Reject("INSTRUMENT_MISSING", "The order has no instrument")
    instrument = instruments.get(str(name))
    if instrument is None:
        raise Reject("INSTRUMENT_UNKNOWN", f"The instrument {name} is unknown")
    if "units" not in spec:
        raise Reject("UNITS_MISSING", "The order has no units")
    amount = parse_units(spec["units"])
    price = None
    if order_type != "MARKET":
        if "price" not in spec:
            raise Reject("PRICE_MISSING", "The order has no price")
        price = parse_price(spec["price"], instrument, "PRICE")
    bound = None
    if spec.get("priceBound") is not None and order_type != "LIMIT":
        bound = parse_price(spec["priceBound"], instrument, "PRICE_BOUND")
    tif = spec.get("timeInForce") or ("FOK" if order_type == "MARKET" else "GTC")
    if tif not in _TIFS_BY_TYPE[order_type]:
        raise Reject(
            "TIME_IN_FORCE_INVALID", f"timeInForce {tif} is not allowed for {order_type} orders"
        )
    gtd_ns = parse_gtd(spec, tif, now_ns)
    position_fill = _strip(spec.get("positionFill") or "DEFAULT", "POSITION_")
    if position_fill not in _POSITION_FILLS:
        raise Reject("POSITION_FILL_INVALID", f"positionFill {position_fill} is not valid")
    trigger = _strip(spec.get("triggerCondition") or "DEFAULT", "TRIGGER_")
    if trigger not in _TRIGGER_CONDITIONS:
        raise Reject("TRIGGER_CONDITION_INVALID", f"triggerCondition {trigger} is not valid")
    extensions = parse_extensions(spec.get("clientExtensions"), client_ids)
    on_fill = parse_on_fill(spec, instrument, now_ns)
    rests = order_type != "MARKET" and tif not in ("FOK", "IOC")
    if rests and pending >= _MAX_PENDING:
        raise Reject("PENDING_ORDERS_ALLOWED_EXCEEDED", "Too many pending orders")
    return SimOrder(
        id="",
        type=order_type,
        instrument=instrument.name,
        units=amount,
        price=price,
        price_bound=bound,
        time_in_force=tif,
        gtd_ns=gtd_ns,
        position_fill=position_fill,
        trigger_condition=trigger,
        client_extensions=extensions,
        create_ns=now_ns,
        on_fill=on_fill,
    )


def parse_dependent(
    spec: dict[str, Any],
    order_type: str,
    *,
    trade: SimTrade | None,
    instrument: Instrument | None,
    client_ids: Container[str],
    taken: bool,
    now_ns: int,
) -> SimOrder:
    """A take profit, stop loss or trailing stop on an open trade; ``Reject`` if it cannot be.

    ``trade`` is the open trade ``tradeID`` names (``None``: none), ``taken``
    whether that trade already has a pending order of this type.
    """
    if trade is None or instrument is None:
        raise Reject("TRADE_DOESNT_EXIST", f"Trade {spec.get('tradeID')!r} is not open")
    if taken:
        raise Reject(
            f"{order_type}_ORDER_ALREADY_EXISTS",
            f"Trade {trade.id} already has a {order_type} order",
        )
    details = parse_exit(spec, instrument, "", order_type, now_ns)
    extensions = parse_extensions(spec.get("clientExtensions"), client_ids)
    return dependent_order(order_type, details, trade, extensions, now_ns)


def dependent_order(
    order_type: str,
    details: dict[str, Any],
    trade: SimTrade,
    extensions: dict[str, str] | None,
    now_ns: int,
) -> SimOrder:
    """The order that closes ``trade`` when its price is reached (``details`` from ``parse_exit``)."""
    return SimOrder(
        id="",
        type=order_type,
        instrument=trade.instrument,
        units=-trade.current_units,
        price=details["price"],
        price_bound=None,
        time_in_force=details["timeInForce"],
        gtd_ns=details["gtd_ns"],
        position_fill="REDUCE_ONLY",
        trigger_condition="DEFAULT",
        client_extensions=extensions,
        create_ns=now_ns,
        trade_id=trade.id,
        distance=details["distance"],
    )


def parse_gtd(spec: dict[str, Any], tif: str, now_ns: int) -> int | None:
    """The ``gtdTime`` of a ``GTD`` order in nanoseconds (``None`` for other TIFs)."""
    if tif != "GTD":
        return None
    if not spec.get("gtdTime"):
        raise Reject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING", "GTD orders need a gtdTime")
    try:
        gtd_ns = parse_time(str(spec["gtdTime"]))
    except ValueError:
        raise Reject("TIME_IN_FORCE_GTD_TIMESTAMP_INVALID", "gtdTime is not a time") from None
    if gtd_ns <= now_ns:
        raise Reject("TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST", "gtdTime is in the past")
    return gtd_ns


def parse_extensions(
    extensions: Any, client_ids: Container[str], *, prefix: str = ""
) -> dict[str, str] | None:
    """Checked ``clientExtensions`` (``prefix`` names the on-fill detail they came in)."""
    if extensions is None:
        return None
    if not isinstance(extensions, dict) or not all(isinstance(v, str) for v in extensions.values()):
        raise Reject(
            f"{prefix}CLIENT_ORDER_ID_INVALID", "clientExtensions must map names to strings"
        )
    client_id = extensions.get("id")
    if client_id is not None:
        if not client_id or len(client_id) > MAX_CLIENT_ID or client_id.startswith("@"):
            raise Reject(f"{prefix}CLIENT_ORDER_ID_INVALID", "clientExtensions.id is not valid")
        if client_id in client_ids:
            raise Reject(
                "CLIENT_ORDER_ID_ALREADY_EXISTS",
                f"An order with client id {client_id} already exists",
            )
    return dict(extensions) or None


#: The on-fill details an entry order may carry, and the order type each one creates.
ON_FILL_TYPES = {
    "takeProfitOnFill": "TAKE_PROFIT",
    "stopLossOnFill": "STOP_LOSS",
    "trailingStopLossOnFill": "TRAILING_STOP_LOSS",
}
#: Dependent orders: their time in force is one of these (GTC by default).
DEPENDENT_TIFS = ("GTC", "GTD", "GFD")


def parse_on_fill(
    spec: dict[str, Any], instrument: Instrument, now_ns: int
) -> dict[str, dict[str, Any]]:
    """The checked on-fill details of an entry order request, by field name.

    Each keeps what the dependent order it creates on the fill needs:
    ``price`` and/or ``distance`` (Decimals), ``timeInForce``, ``gtd_ns``,
    ``clientExtensions``.
    """
    found: dict[str, dict[str, Any]] = {}
    for key, kind in ON_FILL_TYPES.items():
        details = spec.get(key)
        if details is None:
            continue
        what = f"{kind}_ON_FILL_"
        if not isinstance(details, dict):
            raise Reject(f"{what}PRICE_MISSING", f"{key} must be an object")
        found[key] = parse_exit(details, instrument, what, kind, now_ns)
    return found


def parse_exit(
    details: dict[str, Any], instrument: Instrument, what: str, kind: str, now_ns: int
) -> dict[str, Any]:
    """Price or distance, time in force and extensions of a dependent order (or its details)."""
    price = distance = None
    if details.get("price") is not None and kind != "TRAILING_STOP_LOSS":
        price = parse_price(details["price"], instrument, f"{what}PRICE")
    if details.get("distance") is not None and kind != "TAKE_PROFIT":
        distance = parse_price(details["distance"], instrument, f"{what}DISTANCE")
    if kind == "STOP_LOSS" and price is not None and distance is not None:
        raise Reject(f"{what}PRICE_DISTANCE_MAXIMUM_EXCEEDED", "give a price or a distance")
    if price is None and distance is None:
        missing = "DISTANCE" if kind == "TRAILING_STOP_LOSS" else "PRICE"
        raise Reject(f"{what}{missing}_MISSING", f"a {kind} order needs a {missing.lower()}")
    tif = details.get("timeInForce") or "GTC"
    if tif not in DEPENDENT_TIFS:
        raise Reject(f"{what}TIME_IN_FORCE_INVALID", f"timeInForce {tif} is not allowed")
    return {
        "price": price,
        "distance": distance,
        "timeInForce": tif,
        "gtd_ns": parse_gtd(details, tif, now_ns),
        "clientExtensions": parse_extensions(
            details.get("clientExtensions"), (), prefix=what if "ON_FILL" in what else ""
        ),
    }


def parse_units(raw: Any) -> Decimal:
    """Signed whole units, non-zero and within the maximum; ``Reject`` otherwise."""
    amount = _decimal(raw)
    if amount is None or amount == 0:
        raise Reject("UNITS_INVALID", "The order's units must be a non-zero number")
    if amount != amount.to_integral_value():
        raise Reject("UNITS_PRECISION_EXCEEDED", "Units must be whole numbers")
    if abs(amount) > MAX_UNITS:
        raise Reject("UNITS_LIMIT_EXCEEDED", "The order's units exceed the maximum")
    return amount


def parse_price(raw: Any, instrument: Instrument, what: str) -> Decimal:
    """A positive price within the instrument's precision; ``Reject`` as ``{what}_INVALID`` etc."""
    value = _decimal(raw)
    if value is None or value <= 0:
        raise Reject(f"{what}_INVALID", f"{what.lower()} {raw!r} is not a positive number")
    if value.as_tuple().exponent < -instrument.display_precision:  # type: ignore[operator]
        raise Reject(
            f"{what}_PRECISION_EXCEEDED",
            f"{instrument.name} prices have at most {instrument.display_precision} decimals",
        )
    return value


def _decimal(raw: Any) -> Decimal | None:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _strip(value: str, prefix: str) -> str:
    # Orders echo some enums with a prefix (``POSITION_DEFAULT``); accept both spellings.
    return value[len(prefix) :] if value.startswith(prefix) else value


def echo(spec: dict[str, Any]) -> dict[str, Any]:
    """Request fields a reject transaction repeats (strings only, as sent)."""
    keys = (
        "instrument",
        "units",
        "price",
        "priceBound",
        "timeInForce",
        "gtdTime",
        "positionFill",
        "triggerCondition",
        "clientExtensions",
        "tradeID",
        "distance",
        *ON_FILL_TYPES,
    )
    return {k: spec[k] for k in keys if k in spec and isinstance(spec[k], str | dict)}


def on_fill_loss(order: SimOrder, price: Decimal) -> str | None:
    """The cancel reason if an on-fill take profit or stop loss is on the wrong side of ``price``."""
    buy = order.units > 0
    profit = order.on_fill.get("takeProfitOnFill")
    if profit is not None and (profit["price"] <= price if buy else profit["price"] >= price):
        return "TAKE_PROFIT_ON_FILL_LOSS"
    stop = (order.on_fill.get("stopLossOnFill") or {}).get("price")
    if stop is not None and (stop >= price if buy else stop <= price):
        return "STOP_LOSS_ON_FILL_LOSS"
    return None


def _details_wire(details: dict[str, Any], instrument: Instrument) -> dict[str, Any]:
    """On-fill details as v20 echoes them."""
    wire: dict[str, Any] = {"timeInForce": details["timeInForce"]}
    for name in ("price", "distance"):
        if details[name] is not None:
            wire[name] = instrument.text(details[name])
    if details["gtd_ns"] is not None:
        wire["gtdTime"] = details["gtd_ns"]
    if details["clientExtensions"]:
        wire["clientExtensions"] = dict(details["clientExtensions"])
    return wire


def order_fields(order: SimOrder, instrument: Instrument) -> dict[str, Any]:
    """The order's terms as v20 writes them in its create transaction and order views."""
    if order.trade_id is not None:
        return _dependent_fields(order, instrument)
    fields: dict[str, Any] = {
        "type": order.type,
        "instrument": order.instrument,
        "units": units(order.units),
        "timeInForce": order.time_in_force,
        "positionFill": order.position_fill,
    }
    for key, details in order.on_fill.items():
        fields[key] = _details_wire(details, instrument)
    if order.price is not None:
        fields["price"] = instrument.text(order.price)
        fields["triggerCondition"] = order.trigger_condition
    if order.price_bound is not None:
        fields["priceBound"] = instrument.text(order.price_bound)
    if order.gtd_ns is not None:
        fields["gtdTime"] = order.gtd_ns
    if order.client_extensions:
        fields["clientExtensions"] = dict(order.client_extensions)
    if order.closeout is not None:
        side, asked = order.closeout
        fields[f"{side}PositionCloseout"] = {"instrument": order.instrument, "units": asked}
    if order.type in ("LIMIT", "STOP", "MARKET_IF_TOUCHED"):
        fields["partialFill"] = "DEFAULT_FILL"
    return fields


def _dependent_fields(order: SimOrder, instrument: Instrument) -> dict[str, Any]:
    """A take profit / stop loss / trailing stop: no units or instrument, its trade instead."""
    fields: dict[str, Any] = {
        "type": order.type,
        "tradeID": order.trade_id,
        "timeInForce": order.time_in_force,
        "triggerCondition": order.trigger_condition,
    }
    if order.price is not None:
        fields["price"] = instrument.text(order.price)
    if order.distance is not None:
        fields["distance"] = instrument.text(order.distance)
    if order.gtd_ns is not None:
        fields["gtdTime"] = order.gtd_ns
    if order.client_extensions:
        fields["clientExtensions"] = dict(order.client_extensions)
    return fields
