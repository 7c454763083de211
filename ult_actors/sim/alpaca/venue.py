"""The simulated Alpaca account: orders, fills over time, positions, cash, and trade updates.

A cash account (multiplier 1, no shorting): buys need buying power, sells
need shares. Marketable orders (market, crossing limits, triggered stops)
fill in ``fill_slices`` slices, ``fill_delay_s`` apart, at the symbol's
current price (a buy limit never above its limit, a sell limit never below).
Resting orders are re-checked whenever a price is set. Prices are fixed
unless set; unknown symbols get a stable price derived from the name.
Notional (dollar amount) orders are market ``day`` orders for a fractional
qty worked out at the current price, as Alpaca does. Positions close
through ``close_position`` / ``close_all`` (``DELETE /v2/positions``).

Order classes (``order_classes``): a bracket's or oto's exits are ``held``
until the entry has filled completely, then go live (``new``); the first
fill of one exit of a bracket or oco cancels the other; canceling any
order of a class cancels the rest of it. A replace (``PATCH``) answers
with the new order (``accepted``, ``replaces`` set) while the old one
goes ``pending_replace`` and keeps working; ``replace_delay_s`` later
(``None``: when ``complete_replace`` is called) the old one goes
``replaced`` (``replaced_by`` set) and the new one ``new`` -- or, when the
old one filled or ended first, the new one is ``rejected``. As at Alpaca,
the new order's qty is the one sent, else the old order's whole qty, even
when part of it has filled (the fills stay on the old order).

Every execution is also recorded as a FILL activity (``activities``), the
record a client that missed updates reads back.

Every state change is published as a ``trade_updates`` message with the
documented shape; whoever listens at that moment gets it, and nobody else
ever will (the real stream has no replay either).
"""

from __future__ import annotations

import random
import re
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import trio

from ult_actors.brokers.alpaca.wire import ns_to_rfc3339
from ult_actors.sim.alpaca.activities import FillActivities, SaleFees
from ult_actors.sim.alpaca.checks import (
    ApiError,
    decimal_field,
    invalid,
    price_field,
    query_time,
)
from ult_actors.sim.alpaca.order_classes import Exit, exits_of, order_class_of

DEFAULT_PRICES = {
    "AAPL": Decimal("190.00"),
    "MSFT": Decimal("410.00"),
    "SPY": Decimal("520.00"),
    "QQQ": Decimal("440.00"),
    "TSLA": Decimal("175.00"),
}
#: Not final: what ``GET /v2/orders?status=open`` lists.
OPEN = frozenset({"new", "accepted", "partially_filled", "pending_new", "pending_replace", "held"})
#: On the market: may fill, holds buying power or shares.
LIVE = frozenset({"new", "partially_filled", "pending_replace"})
_REPLACEABLE = frozenset({"new", "partially_filled"})
_REPLACE_FIELDS = ("qty", "time_in_force", "limit_price", "stop_price", "trail")
_SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
_TYPES = frozenset({"market", "limit", "stop", "stop_limit"})
_TIFS = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
MAX_CLIENT_ORDER_ID = 48
#: Alpaca computes fractional quantities to nine decimal places.
_FRACTION = Decimal("0.000000001")


@dataclass
class SimOrder:
    """One order on the simulated book."""

    id: str
    client_order_id: str
    asset_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    extended_hours: bool
    created_ns: int
    status: str = "new"
    filled_qty: Decimal = Decimal(0)
    filled_notional: Decimal = Decimal(0)
    updated_ns: int = 0
    filled_ns: int | None = None
    canceled_ns: int | None = None
    expired_ns: int | None = None
    failed_ns: int | None = None
    triggered: bool = False
    working: bool = False
    #: The dollar amount of a notional order (its ``qty`` is then derived).
    notional: Decimal | None = None
    #: ``""`` (simple), ``bracket``, ``oco`` or ``oto``; the legs carry their parent's.
    order_class: str = ""
    parent_id: str | None = None
    leg_ids: list[str] = field(default_factory=list)
    replaces: str | None = None
    replaced_by: str | None = None
    replaced_ns: int | None = None

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def avg_price(self) -> Decimal | None:
        if not self.filled_qty:
            return None
        return (self.filled_notional / self.filled_qty).quantize(Decimal("0.0001")).normalize()

    def to_json(self, legs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The documented order object (every field, null when absent), ``legs`` nested."""

        def ts(ns: int | None) -> str | None:
            return ns_to_rfc3339(ns) if ns is not None else None

        def dec(value: Decimal | None) -> str | None:
            return format(value, "f") if value is not None else None

        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": ts(self.created_ns),
            "updated_at": ts(self.updated_ns or self.created_ns),
            "submitted_at": ts(self.created_ns),
            "filled_at": ts(self.filled_ns),
            "expired_at": ts(self.expired_ns),
            "expires_at": None,
            "canceled_at": ts(self.canceled_ns),
            "failed_at": ts(self.failed_ns),
            "replaced_at": ts(self.replaced_ns),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": dec(self.notional),
            "qty": dec(self.qty) if self.notional is None else None,
            "filled_qty": dec(self.filled_qty),
            "filled_avg_price": dec(self.avg_price),
            "order_class": self.order_class,
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "position_intent": "buy_to_open" if self.side == "buy" else "sell_to_close",
            "time_in_force": self.time_in_force,
            "limit_price": dec(self.limit_price),
            "stop_price": dec(self.stop_price),
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": legs,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
        }


@dataclass
class _Holding:
    qty: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)


@dataclass
class VenueStats:
    """Counters the tests and the chaos script read."""

    submits: int = 0
    orders_created: int = 0
    fills: int = 0
    events_published: int = 0


@dataclass
class AlpacaVenue:
    """The account behind the simulator; all state changes go through its methods."""

    now_ns: Callable[[], int]
    rng: random.Random
    cash: Decimal = Decimal("100000")
    fill_delay_s: float = 0.05
    fill_slices: int = 2
    #: False: marketable orders wait for ``execute`` (tests that step fills by hand).
    autofill: bool = True
    #: How long a replace stays ``pending_replace``; ``None``: until ``complete_replace``.
    replace_delay_s: float | None = 0.0
    market_open: bool = True
    prices: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    stats: VenueStats = field(default_factory=VenueStats)
    #: Called with each trade update message (the stream hub fans it out).
    publish: Callable[[dict[str, Any]], None] = lambda message: None
    account_id: str = ""
    orders: dict[str, SimOrder] = field(default_factory=dict)
    by_client: dict[str, str] = field(default_factory=dict)
    holdings: dict[str, _Holding] = field(default_factory=dict)
    #: Every execution, for ``GET /v2/account/activities/FILL``.
    activities: FillActivities = field(default_factory=FillActivities)
    #: Regulatory fees every sale pays (FEE activities).
    sale_fees: SaleFees = field(default_factory=SaleFees)
    _nursery: trio.Nursery | None = None

    def __post_init__(self) -> None:
        self.account_id = self.account_id or self._uuid()

    def attach(self, nursery: trio.Nursery) -> None:
        """Where fill tasks run (the server's nursery)."""
        self._nursery = nursery

    # -- queries ------------------------------------------------------------

    def price(self, symbol: str) -> Decimal:
        """The symbol's current price."""
        if symbol not in self.prices:
            cents = 1000 + zlib.crc32(symbol.encode()) % 49000
            self.prices[symbol] = Decimal(cents) / 100
        return self.prices[symbol]

    def latest_quote(self, symbol: str) -> dict[str, Any]:
        """``GET /v2/stocks/{symbol}/quotes/latest`` (market data): a cent either side of
        the symbol's price, which is where its market orders fill."""
        price = self.price(symbol)
        cent = Decimal("0.01")
        return {
            "symbol": symbol,
            "quote": {
                "t": ns_to_rfc3339(self.now_ns()),
                "bp": float(price - cent), "bs": 1, "bx": "V",
                "ap": float(price + cent), "as": 1, "ax": "V",
                "c": ["R"], "z": "C",
            },
        }  # fmt: skip

    def get(self, order_id: str) -> SimOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise ApiError(404, 40410000, "order not found")
        return order

    def get_by_client_id(self, client_order_id: str) -> SimOrder:
        order_id = self.by_client.get(client_order_id)
        if order_id is None:
            raise ApiError(404, 40410000, "order not found")
        return self.orders[order_id]

    def order_json(self, order: SimOrder, *, nested: bool = True) -> dict[str, Any]:
        """The order object; with ``nested``, its legs under ``legs``."""
        if not nested or not order.leg_ids:
            return order.to_json()
        return order.to_json(legs=[self.orders[leg].to_json() for leg in order.leg_ids])

    def list_orders(self, query: dict[str, str]) -> list[SimOrder]:
        """``GET /v2/orders`` with status/limit/after/until/direction/symbols/nested.

        With ``nested=true`` legs are left out here: they come under their parent.
        """
        status = query.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise invalid(f"invalid status {status!r}: expected open, closed or all")
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            raise invalid("limit must be an integer") from None
        if not 1 <= limit <= 500:
            raise invalid("limit must be between 1 and 500")
        after = query_time(query, "after")
        until = query_time(query, "until")
        symbols = {s for s in query.get("symbols", "").split(",") if s}
        direction = query.get("direction", "desc")
        nested = is_true(query.get("nested"))
        picked = [
            o
            for o in self.orders.values()
            if (status == "all" or (o.status in OPEN) == (status == "open"))
            and not (nested and o.parent_id is not None)
            and (after is None or o.created_ns > after)
            and (until is None or o.created_ns < until)
            and (not symbols or o.symbol in symbols)
        ]
        picked.sort(key=lambda o: o.created_ns, reverse=direction != "asc")
        return picked[:limit]

    def account_json(self) -> dict[str, Any]:
        """The documented account object."""
        long_value = sum(
            (h.qty * self.price(s) for s, h in self.holdings.items()), start=Decimal(0)
        )
        equity = self.cash + long_value
        buying_power = max(Decimal(0), self.cash - self._reserved())
        money = {
            "cash": self.cash,
            "buying_power": buying_power,
            "regt_buying_power": buying_power,
            "non_marginable_buying_power": buying_power,
            "options_buying_power": buying_power,
            "portfolio_value": equity,
            "equity": equity,
            "last_equity": equity,
            "long_market_value": long_value,
            "short_market_value": Decimal(0),
            "initial_margin": long_value,
            "maintenance_margin": long_value,
            "last_maintenance_margin": long_value,
            "sma": Decimal(0),
            "accrued_fees": Decimal(0),
            "pending_transfer_in": Decimal(0),
            "pending_transfer_out": Decimal(0),
        }
        return {
            "id": self.account_id,
            "account_number": "PA" + self.account_id.replace("-", "")[:10].upper(),
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "currency": "USD",
            **{k: format(v, "f") for k, v in money.items()},
            "multiplier": "1",
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "trade_suspended_by_user": False,
            "shorting_enabled": False,
            "created_at": ns_to_rfc3339(0),
            "options_approved_level": 0,
            "options_trading_level": 0,
        }

    def positions_json(self) -> list[dict[str, Any]]:
        """Every open position, documented shape."""
        return [self.position_json(s) for s in sorted(self.holdings)]

    def position_json(self, symbol: str) -> dict[str, Any]:
        """One position (404 when flat)."""
        holding = self.holdings.get(symbol)
        if holding is None:
            raise ApiError(404, 40410000, "position does not exist")
        price = self.price(symbol)
        value = holding.qty * price
        avg = (holding.cost / holding.qty).quantize(Decimal("0.0001")).normalize()
        pl = value - holding.cost
        plpc = (pl / holding.cost).quantize(Decimal("0.0001")) if holding.cost else Decimal(0)
        held = self._held_for_sells(symbol)

        def dec(v: Decimal) -> str:
            return format(v, "f")

        return {
            "asset_id": self._asset_id(symbol),
            "symbol": symbol,
            "exchange": "NASDAQ",
            "asset_class": "us_equity",
            "asset_marginable": True,
            "avg_entry_price": dec(avg),
            "qty": dec(holding.qty),
            "qty_available": dec(holding.qty - held),
            "side": "long",
            "market_value": dec(value),
            "cost_basis": dec(holding.cost),
            "unrealized_pl": dec(pl),
            "unrealized_plpc": dec(plpc),
            "unrealized_intraday_pl": dec(pl),
            "unrealized_intraday_plpc": dec(plpc),
            "current_price": dec(price),
            "lastday_price": dec(price),
            "change_today": "0",
        }

    def clock_json(self) -> dict[str, Any]:
        """``GET /v2/clock``: the market is open or closed as set; next changes an hour away."""
        now = self.now_ns()
        hour = 3600 * 1_000_000_000
        return {
            "timestamp": ns_to_rfc3339(now),
            "is_open": self.market_open,
            "next_open": ns_to_rfc3339(now + (24 * hour if self.market_open else hour)),
            "next_close": ns_to_rfc3339(now + (hour if self.market_open else 2 * hour)),
        }

    # -- commands -----------------------------------------------------------

    def submit(self, body: Any) -> SimOrder:
        """Validate and place an order (``ApiError`` with Alpaca's status when refused)."""
        self.stats.submits += 1
        if not isinstance(body, dict):
            raise ApiError(400, 40010000, "request body format is invalid")
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise invalid("symbol is required")
        if not _SYMBOL_RE.match(symbol):
            raise invalid(f'asset "{symbol}" not found')
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise invalid("side must be buy or sell")
        kind = body.get("type", body.get("order_type", "market"))
        if kind not in _TYPES:
            raise invalid(f"order type {kind!r} is not supported")
        tif = body.get("time_in_force")
        if tif not in _TIFS:
            raise invalid("time_in_force is required: day, gtc, opg, cls, ioc or fok")
        order_class = order_class_of(body)
        notional = _notional(body, kind, tif)
        qty: Decimal | None = decimal_field(body.get("qty"), "qty")
        if notional is not None:
            qty = (notional / self.price(symbol)).quantize(_FRACTION, rounding=ROUND_DOWN)
        if qty is None or qty <= 0:
            raise invalid("qty must be > 0")
        if qty != qty.to_integral_value() and not (kind == "market" and tif == "day"):
            raise invalid("fractional orders must be DAY market orders")
        if qty != qty.to_integral_value() and order_class != "simple":
            raise invalid(f"{order_class} orders must be for whole shares")
        limit = price_field(body.get("limit_price"), "limit_price")
        stop = price_field(body.get("stop_price"), "stop_price")
        exits = exits_of(
            body,
            order_class=order_class,
            side=side,
            kind=kind,
            tif=tif,
            base=limit or stop or self.price(symbol),
        )
        if order_class == "oco":
            # The order itself is the take-profit; its limit_price may be left out.
            assert exits.take_profit is not None
            if limit is not None and limit != exits.take_profit.limit_price:
                raise invalid("limit_price of an oco order must equal take_profit.limit_price")
            limit = exits.take_profit.limit_price
        if kind in ("limit", "stop_limit") and limit is None:
            raise invalid(f"limit_price is required for {kind} orders")
        if kind in ("stop", "stop_limit") and stop is None:
            raise invalid(f"stop_price is required for {kind} orders")
        if kind in ("market", "stop") and limit is not None:
            raise invalid(f"limit_price is not allowed for {kind} orders")
        if kind in ("market", "limit") and stop is not None:
            raise invalid(f"stop_price is not allowed for {kind} orders")
        extended = bool(body.get("extended_hours", False))
        if extended and not (kind == "limit" and tif == "day"):
            raise invalid("extended hours order must be DAY limit orders")
        coid = self._client_order_id(body)
        self._check_funds(symbol, side, qty, limit or stop)
        order = self._place(
            symbol=symbol,
            side=side,
            kind=kind,
            tif=tif,
            qty=qty,
            coid=coid,
            limit=limit,
            stop=stop,
            extended=extended,
            notional=notional,
            order_class="" if order_class == "simple" else order_class,
            exits=[exits.stop_loss]
            if order_class == "oco"
            else [exits.take_profit, exits.stop_loss],
        )
        return order

    def _place(
        self,
        *,
        symbol: str,
        side: str,
        kind: str,
        tif: str,
        qty: Decimal,
        coid: str,
        limit: Decimal | None = None,
        stop: Decimal | None = None,
        extended: bool = False,
        notional: Decimal | None = None,
        order_class: str = "",
        exits: list[Exit | None] | None = None,
    ) -> SimOrder:
        """Put a checked order (and its exits) on the book, publish ``new`` and work it."""
        now = self.now_ns()
        order = SimOrder(
            id=self._uuid(),
            client_order_id=coid,
            asset_id=self._asset_id(symbol),
            symbol=symbol,
            side=side,
            type=kind,
            time_in_force=tif,
            qty=qty,
            limit_price=limit,
            stop_price=stop,
            extended_hours=extended,
            created_ns=now,
            updated_ns=now,
            notional=notional,
            order_class=order_class,
        )
        self._book(order)
        # An oco's stop-loss works beside the order at once; other exits wait for the entry.
        exit_side = order.side if order_class == "oco" else _other_side(order.side)
        status = "new" if order_class == "oco" else "held"
        legs = [self._leg(order, e, exit_side, status) for e in exits or () if e is not None]
        self._event("new", order)
        for leg in legs:
            if leg.status == "new":
                self._event("new", leg)
        for working in (order, *legs):
            if working.status in LIVE:
                self._consider(working, arriving=True)
        return order

    def _leg(self, parent: SimOrder, exit: Exit, side: str, status: str) -> SimOrder:
        """Book one exit of ``parent`` (``held`` until its entry fills, or ``new``)."""
        leg = SimOrder(
            id=self._uuid(),
            client_order_id=self._uuid(),
            asset_id=parent.asset_id,
            symbol=parent.symbol,
            side=side,
            type=exit.type,
            time_in_force=parent.time_in_force,
            qty=parent.qty,
            limit_price=exit.limit_price,
            stop_price=exit.stop_price,
            extended_hours=False,
            created_ns=parent.created_ns,
            updated_ns=parent.created_ns,
            status=status,
            order_class=parent.order_class,
            parent_id=parent.id,
        )
        parent.leg_ids.append(leg.id)
        self._book(leg)
        return leg

    def _client_order_id(self, body: dict[str, Any]) -> str:
        """The request's client order id, checked (a fresh one when none is given)."""
        coid = body.get("client_order_id") or str(self._uuid())
        if not isinstance(coid, str) or len(coid) > MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be no more than {MAX_CLIENT_ORDER_ID} characters")
        if coid in self.by_client:
            raise ApiError(422, 40010001, "client_order_id must be unique")
        return coid

    def _book(self, order: SimOrder) -> None:
        self.orders[order.id] = order
        self.by_client[order.client_order_id] = order.id
        self.stats.orders_created += 1

    def close_position(self, symbol: str, query: dict[str, str]) -> SimOrder:
        """``DELETE /v2/positions/{symbol}``: a market order selling all, ``qty`` or ``percentage``."""
        holding = self.holdings.get(symbol)
        if holding is None:
            raise ApiError(404, 40410000, "position does not exist")
        if "qty" in query and "percentage" in query:
            raise invalid("only one of qty or percentage may be given")
        qty = holding.qty
        if "qty" in query:
            qty = decimal_field(query["qty"], "qty") or Decimal(0)
        elif "percentage" in query:
            share = decimal_field(query["percentage"], "percentage") or Decimal(0)
            if not 0 < share <= 100:
                raise invalid("percentage must be in (0, 100]")
            qty = (holding.qty * share / 100).quantize(_FRACTION, rounding=ROUND_DOWN)
        if qty <= 0:
            raise invalid("qty must be > 0")
        self._check_funds(symbol, "sell", qty, None)
        return self._place(
            symbol=symbol, side="sell", kind="market", tif="day", qty=qty, coid=self._uuid()
        )

    def close_all(self, *, cancel_orders: bool) -> list[dict[str, Any]]:
        """``DELETE /v2/positions``: the 207 body, one ``{symbol, status, body}`` per position."""
        if cancel_orders:
            self.cancel_all()
        results: list[dict[str, Any]] = []
        for symbol in sorted(self.holdings):
            try:
                order = self.close_position(symbol, {})
            except ApiError as exc:
                results.append({"symbol": symbol, "status": exc.status, "body": exc.body})
            else:
                results.append({"symbol": symbol, "status": 200, "body": order.to_json()})
        return results

    def asset_json(self, symbol: str) -> dict[str, Any]:
        """``GET /v2/assets/{symbol}``: every symbol the simulator trades is an active asset."""
        if not _SYMBOL_RE.match(symbol):
            raise ApiError(404, 40410000, "asset not found")
        return {
            "id": self._asset_id(symbol),
            "class": "us_equity",
            "exchange": "NASDAQ",
            "symbol": symbol,
            "name": f"{symbol} (simulated)",
            "status": "active",
            "tradable": True,
            "marginable": True,
            "shortable": False,
            "easy_to_borrow": False,
            "fractionable": True,
            "min_order_size": "0.000000001",
            "min_trade_increment": "0.000000001",
            "price_increment": "0.01",
            "maintenance_margin_requirement": 100,
            "attributes": ["fractional_eh_enabled"],
        }

    def cancel(self, order_id: str) -> None:
        """Cancel an open order and the rest of its order class (404 unknown, 422 refused)."""
        order = self.get(order_id)
        if order.status not in OPEN:
            raise ApiError(422, 42210000, f'order is already in "{order.status}" state')
        if order.status in ("pending_replace", "accepted"):
            raise ApiError(
                422, 42210000, f'order is in "{order.status}" state: it is being replaced'
            )
        for member in self._class_members(order):
            if member.status in OPEN:
                self._finish(member, "canceled")

    def cancel_all(self) -> list[dict[str, Any]]:
        """Cancel every open order; the 207 body."""
        results = []
        for order in [o for o in self.orders.values() if o.status in OPEN]:
            if order.status in OPEN:  # not already canceled with its class
                self._finish(order, "canceled")
            results.append({"id": order.id, "status": 200, "body": order.to_json()})
        return results

    def replace(self, order_id: str, body: Any) -> SimOrder:
        """``PATCH /v2/orders/{id}``: the new order, ``accepted``; the old one ``pending_replace``."""
        old = self.get(order_id)
        if not isinstance(body, dict):
            raise ApiError(400, 40010000, "request body format is invalid")
        if old.status not in _REPLACEABLE:
            raise invalid(f'order is in "{old.status}" state and cannot be replaced')
        if old.notional is not None:
            raise invalid("notional orders cannot be replaced")
        if all(body.get(name) is None for name in _REPLACE_FIELDS):
            raise invalid("at least one of qty, limit_price, stop_price, trail or time_in_force")
        if body.get("trail") is not None:
            raise invalid("trail is only valid for trailing_stop orders")
        qty = decimal_field(body.get("qty"), "qty")
        if qty is not None and old.qty != old.qty.to_integral_value():
            raise invalid("qty of a fractional order cannot be changed")
        if qty is not None and (qty <= 0 or qty != qty.to_integral_value()):
            raise invalid("qty must be a whole number of shares > 0")
        limit = price_field(body.get("limit_price"), "limit_price")
        stop = price_field(body.get("stop_price"), "stop_price")
        if limit is not None and old.type not in ("limit", "stop_limit"):
            raise invalid(f"{old.type} orders must not have limit_price")
        if stop is not None and old.type not in ("stop", "stop_limit"):
            raise invalid(f"{old.type} orders must not have stop_price")
        tif = body.get("time_in_force") or old.time_in_force
        allowed = ("day", "gtc") if old.order_class else _TIFS
        if tif not in allowed:
            raise invalid(f"time_in_force must be one of {', '.join(sorted(allowed))}")
        coid = self._client_order_id(body)
        new_qty = qty if qty is not None else old.qty  # Alpaca's: the whole qty, filled or not
        new_limit = limit if limit is not None else old.limit_price
        new_stop = stop if stop is not None else old.stop_price
        self._check_funds(old.symbol, old.side, new_qty, new_limit or new_stop, instead_of=old)
        now = self.now_ns()
        new = SimOrder(
            id=self._uuid(),
            client_order_id=coid,
            asset_id=old.asset_id,
            symbol=old.symbol,
            side=old.side,
            type=old.type,
            time_in_force=tif,
            qty=new_qty,
            limit_price=new_limit,
            stop_price=new_stop,
            extended_hours=old.extended_hours,
            created_ns=now,
            updated_ns=now,
            status="accepted",
            order_class=old.order_class,
            replaces=old.id,
        )
        self._book(new)
        old.status = "pending_replace"
        old.updated_ns = now
        self._event("pending_replace", old)
        if self.replace_delay_s is not None:  # None: it waits for complete_replace
            if self._nursery is None:
                self.complete_replace(new.id)
            else:
                self._nursery.start_soon(self._complete_replace_later, new, self.replace_delay_s)
        return new

    def complete_replace(self, new_id: str) -> None:
        """The replace reaches the market: the old order ``replaced``, or the new ``rejected``."""
        new = self.get(new_id)
        if new.status != "accepted" or new.replaces is None:
            return  # canceled meanwhile (cancel all), or already settled
        old = self.orders[new.replaces]
        if old.status != "pending_replace":
            # The old order filled (or ended) first: the replacement never reaches the market.
            self._finish(new, "rejected")
            return
        now = self.now_ns()
        old.status, old.replaced_by, old.replaced_ns, old.updated_ns = "replaced", new.id, now, now
        # The new order takes the old one's place in its order class.
        new.parent_id, new.leg_ids, old.leg_ids = old.parent_id, old.leg_ids, []
        for leg_id in new.leg_ids:
            self.orders[leg_id].parent_id = new.id
        if old.parent_id is not None:
            siblings = self.orders[old.parent_id].leg_ids
            siblings[siblings.index(old.id)] = new.id
        self._event("replaced", old)
        new.status, new.updated_ns = "new", now
        self._event("new", new)
        self._consider(new, arriving=True)

    async def _complete_replace_later(self, new: SimOrder, delay_s: float) -> None:
        await trio.sleep(delay_s)
        self.complete_replace(new.id)

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move a price; resting orders that now cross start filling."""
        if not price.is_finite() or price <= 0:
            raise ValueError("price must be positive")
        self.prices[symbol] = price
        for order in list(self.orders.values()):
            if order.symbol == symbol and order.status in LIVE:
                self._consider(order, arriving=False)

    def set_market_open(self, is_open: bool) -> None:
        """Open or close the market; opening starts work on waiting orders."""
        self.market_open = is_open
        if is_open:
            for order in list(self.orders.values()):
                if order.status in LIVE:
                    self._consider(order, arriving=False)

    def close_day(self) -> list[str]:
        """End of the session: the market closes and open ``day`` orders expire (ids)."""
        self.market_open = False
        expired = []
        for order in list(self.orders.values()):
            if order.status in OPEN and order.time_in_force in ("day", "opg", "cls"):
                self._finish(order, "expired")
                expired.append(order.id)
        return expired

    def reject(self, order_id: str) -> None:
        """Reject an accepted order after the fact, as Alpaca's ``rejected`` event does."""
        order = self.get(order_id)
        if order.status not in OPEN:
            raise ValueError(f"order {order_id} is {order.status}")
        self._finish(order, "rejected")

    def execute(
        self, order_id: str, qty: Decimal | None = None, price: Decimal | None = None
    ) -> None:
        """Fill (part of) an order now, by hand (default: the rest, at the current price)."""
        order = self.get(order_id)
        if order.status not in LIVE:
            raise ValueError(f"order {order_id} is {order.status}")
        self._fill(order, min(qty or order.remaining, order.remaining), price)

    # -- lifecycle ----------------------------------------------------------

    def _consider(self, order: SimOrder, *, arriving: bool) -> None:
        stop = order.stop_price
        if stop is not None and not order.triggered:
            price = self.price(order.symbol)
            crossed = price >= stop if order.side == "buy" else price <= stop
            if self.market_open and crossed:
                order.triggered = True
        marketable = self._marketable(order)
        if order.time_in_force in ("ioc", "fok") and arriving:
            if marketable:
                self._fill(order, order.qty, None)
            else:
                self._finish(order, "canceled")
            return
        if marketable and self.autofill and not order.working and self._nursery is not None:
            order.working = True
            self._nursery.start_soon(self._work, order)

    def _marketable(self, order: SimOrder) -> bool:
        if not self.market_open or order.status not in LIVE:
            return False
        if order.type in ("stop", "stop_limit") and not order.triggered:
            return False
        if order.type in ("market", "stop"):
            return True
        price = self.price(order.symbol)
        assert order.limit_price is not None
        return price <= order.limit_price if order.side == "buy" else price >= order.limit_price

    async def _work(self, order: SimOrder) -> None:
        """Fill a marketable order over time, a slice per ``fill_delay_s``."""
        try:
            for part in _slices(order.remaining, self.fill_slices):
                await trio.sleep(self.fill_delay_s)
                if not self._marketable(order):
                    return  # canceled, or the price moved away: it rests
                self._fill(order, min(part, order.remaining), None)
        finally:
            order.working = False

    def _fill(self, order: SimOrder, qty: Decimal, price: Decimal | None) -> None:
        if qty <= 0:
            return
        market = self.price(order.symbol)
        if price is None:
            price = market
            if order.limit_price is not None and order.type in ("limit", "stop_limit"):
                price = (
                    min(price, order.limit_price)
                    if order.side == "buy"
                    else max(price, order.limit_price)
                )
        now = self.now_ns()
        order.filled_qty += qty
        order.filled_notional += qty * price
        order.updated_ns = now
        holding = self.holdings.setdefault(order.symbol, _Holding())
        if order.side == "buy":
            self.cash -= qty * price
            holding.qty += qty
            holding.cost += qty * price
        else:
            self.cash += qty * price
            avg = holding.cost / holding.qty if holding.qty else Decimal(0)
            holding.qty -= qty
            holding.cost -= qty * avg
        if holding.qty == 0:
            del self.holdings[order.symbol]
        done = order.filled_qty >= order.qty
        if done:
            order.status, order.filled_ns = "filled", now
        elif order.status != "pending_replace":  # a replace in flight stays in flight
            order.status = "partially_filled"
        self.stats.fills += 1
        execution_id = self._uuid()
        self.activities.record(order, execution_id=execution_id, ts_ns=now, qty=qty, price=price)
        if order.side == "sell":
            for name, amount in self.sale_fees.of(qty, price).items():
                self.cash -= amount
                self.activities.fee(
                    order, name=name, amount=amount, execution_id=execution_id, ts_ns=now,
                    qty=qty, price=price,
                )  # fmt: skip
        self._event(
            "fill" if done else "partial_fill",
            order,
            price=format(price, "f"),
            qty=format(qty, "f"),
            position_qty=format(holding.qty if holding.qty else Decimal(0), "f"),
            execution_id=execution_id,
        )
        # Only one exit may execute: its first fill, partial or not, cancels the others.
        for peer in self._exit_peers(order):
            if peer.status in OPEN:
                self._finish(peer, "canceled")
        if done and order.parent_id is None and order.order_class in ("bracket", "oto"):
            for leg in self._legs(order):
                if leg.status == "held":  # the entry has filled: its exits go to market
                    leg.status, leg.updated_ns = "new", now
                    self._event("new", leg)
                    self._consider(leg, arriving=True)

    def _finish(self, order: SimOrder, status: str) -> None:
        now = self.now_ns()
        order.status = status
        order.updated_ns = now
        if status == "canceled":
            order.canceled_ns = now
        elif status == "expired":
            order.expired_ns = now
        elif status == "rejected":
            order.failed_ns = now
        self._event(status, order)
        for leg in self._legs(order):
            if leg.status == "held":  # the entry will not fill any more: nor will its exits
                self._finish(leg, "canceled")

    def _legs(self, order: SimOrder) -> list[SimOrder]:
        return [self.orders[leg_id] for leg_id in order.leg_ids]

    def _class_members(self, order: SimOrder) -> list[SimOrder]:
        """Every order of ``order``'s order class, the parent first (just ``order`` if simple)."""
        parent = self.orders[order.parent_id] if order.parent_id is not None else order
        return [parent, *self._legs(parent)]

    def _exit_peers(self, order: SimOrder) -> list[SimOrder]:
        """The other exits of a bracket's or an oco's exit ``order`` (none for others)."""
        if order.order_class == "oco":
            exits = self._class_members(order)
        elif order.order_class == "bracket" and order.parent_id is not None:
            exits = self._legs(self.orders[order.parent_id])
        else:
            return []
        return [o for o in exits if o is not order]

    def _event(self, event: str, order: SimOrder, **extra: str) -> None:
        # Every event carries ``timestamp``: alpaca-py's TradeUpdate requires it.
        data: dict[str, Any] = {
            "event": event,
            "order": self.order_json(order),
            "timestamp": ns_to_rfc3339(order.updated_ns),
        }
        data.update(extra)
        self.stats.events_published += 1
        self.publish({"stream": "trade_updates", "data": data})

    # -- money --------------------------------------------------------------

    def _cost(self, order: SimOrder) -> Decimal:
        price = order.limit_price or order.stop_price or self.price(order.symbol)
        return order.remaining * price

    def _reserved(self, instead_of: SimOrder | None = None) -> Decimal:
        """Buying power held by buy orders; a replace in flight holds the larger of its two."""
        total = Decimal(0)
        for o in self.orders.values():
            if o.side != "buy" or o is instead_of:
                continue
            if o.status == "accepted" and o.replaces is not None:
                total += max(self._cost(o), self._cost(self.orders[o.replaces]))
            elif o.status in LIVE and o.status != "pending_replace":
                total += self._cost(o)
        return total

    def _held_for_sells(self, symbol: str, instead_of: SimOrder | None = None) -> Decimal:
        """Shares held by sell orders, once per order class (its exits sell the same shares)."""
        held: dict[str, Decimal] = {}
        skipped = instead_of.parent_id or instead_of.id if instead_of is not None else None
        for o in self.orders.values():
            key = o.parent_id or o.id
            if o.symbol == symbol and o.side == "sell" and o.status in LIVE and key != skipped:
                held[key] = max(held.get(key, Decimal(0)), o.remaining)
        return sum(held.values(), start=Decimal(0))

    def _check_funds(
        self,
        symbol: str,
        side: str,
        qty: Decimal,
        price: Decimal | None,
        *,
        instead_of: SimOrder | None = None,
    ) -> None:
        """Refuse (403) an order the account cannot pay for or deliver (``instead_of``: replaced)."""
        if side == "buy":
            cost = qty * (price or self.price(symbol))
            if cost > self.cash - self._reserved(instead_of):
                raise ApiError(403, 40310000, "insufficient buying power")
            return
        holding = self.holdings.get(symbol, _Holding())
        held = self._held_for_sells(symbol, instead_of)
        available = holding.qty - held
        if qty > available:
            raise ApiError(
                403,
                40310000,
                f"insufficient qty available for order (requested: {qty:f}, available: {available:f})",
                available=format(available, "f"),
                existing_qty=format(holding.qty, "f"),
                held_for_orders=format(held, "f"),
                symbol=symbol,
            )

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _asset_id(self, symbol: str) -> str:
        return str(uuid.UUID(int=zlib.crc32(symbol.encode()) << 64 | 0xA1, version=4))


def _slices(qty: Decimal, n: int) -> list[Decimal]:
    if n <= 1 or qty < n or qty != qty.to_integral_value():
        return [qty]
    base = (qty / n).to_integral_value(rounding=ROUND_DOWN)
    return [base] * (n - 1) + [qty - base * (n - 1)]


def _notional(body: dict[str, Any], kind: str, tif: str) -> Decimal | None:
    """The dollar amount of a notional order (``None``: a qty order), checked as Alpaca does."""
    notional = decimal_field(body.get("notional"), "notional")
    if notional is None:
        return None
    if body.get("qty") is not None:
        raise invalid("qty and notional must not both be given")
    if kind != "market" or tif != "day":
        raise invalid("notional orders must be DAY market orders")
    if notional <= 0 or notional.as_tuple().exponent < -2:  # type: ignore[operator]
        raise invalid("notional must be > 0 with at most two decimal places")
    return notional


def _other_side(side: str) -> str:
    return "sell" if side == "buy" else "buy"


def is_true(value: str | None) -> bool:
    """A boolean query parameter (``true``, any case) as clients send it."""
    return (value or "").lower() == "true"
