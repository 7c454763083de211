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
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

import trio

from ult_actors.brokers.alpaca.wire import ns_to_rfc3339, rfc3339_to_ns

DEFAULT_PRICES = {
    "AAPL": Decimal("190.00"),
    "MSFT": Decimal("410.00"),
    "SPY": Decimal("520.00"),
    "QQQ": Decimal("440.00"),
    "TSLA": Decimal("175.00"),
}
OPEN = frozenset({"new", "accepted", "partially_filled", "pending_new"})
_SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
_TYPES = frozenset({"market", "limit", "stop", "stop_limit"})
_TIFS = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
MAX_CLIENT_ORDER_ID = 48
#: Alpaca computes fractional quantities to nine decimal places.
_FRACTION = Decimal("0.000000001")


class ApiError(Exception):
    """A refusal, answered with Alpaca's status and JSON body."""

    def __init__(self, status: int, code: int | None, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = (
            {"code": code, "message": message} if code is not None else {"message": message}
        )
        self.body.update(extra)


def _invalid(message: str) -> ApiError:
    return ApiError(422, 42210000, message)


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

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def avg_price(self) -> Decimal | None:
        if not self.filled_qty:
            return None
        return (self.filled_notional / self.filled_qty).quantize(Decimal("0.0001")).normalize()

    def to_json(self) -> dict[str, Any]:
        """The documented order object (every field, null when absent)."""

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
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": dec(self.notional),
            "qty": dec(self.qty) if self.notional is None else None,
            "filled_qty": dec(self.filled_qty),
            "filled_avg_price": dec(self.avg_price),
            "order_class": "",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "position_intent": "buy_to_open" if self.side == "buy" else "sell_to_close",
            "time_in_force": self.time_in_force,
            "limit_price": dec(self.limit_price),
            "stop_price": dec(self.stop_price),
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": None,
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
    market_open: bool = True
    prices: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    stats: VenueStats = field(default_factory=VenueStats)
    #: Called with each trade update message (the stream hub fans it out).
    publish: Callable[[dict[str, Any]], None] = lambda message: None
    account_id: str = ""
    orders: dict[str, SimOrder] = field(default_factory=dict)
    by_client: dict[str, str] = field(default_factory=dict)
    holdings: dict[str, _Holding] = field(default_factory=dict)
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

    def list_orders(self, query: dict[str, str]) -> list[SimOrder]:
        """``GET /v2/orders`` with status/limit/after/until/direction/symbols."""
        status = query.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise _invalid(f"invalid status {status!r}: expected open, closed or all")
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            raise _invalid("limit must be an integer") from None
        if not 1 <= limit <= 500:
            raise _invalid("limit must be between 1 and 500")
        after = _query_time(query, "after")
        until = _query_time(query, "until")
        symbols = {s for s in query.get("symbols", "").split(",") if s}
        direction = query.get("direction", "desc")
        picked = [
            o
            for o in self.orders.values()
            if (status == "all" or (o.status in OPEN) == (status == "open"))
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
        held = sum(
            (o.remaining for o in self.orders.values() if _sell_hold(o, symbol)),
            start=Decimal(0),
        )

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
            raise _invalid("symbol is required")
        if not _SYMBOL_RE.match(symbol):
            raise _invalid(f'asset "{symbol}" not found')
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise _invalid("side must be buy or sell")
        kind = body.get("type", body.get("order_type", "market"))
        if kind not in _TYPES:
            raise _invalid(f"order type {kind!r} is not supported")
        tif = body.get("time_in_force")
        if tif not in _TIFS:
            raise _invalid("time_in_force is required: day, gtc, opg, cls, ioc or fok")
        order_class = body.get("order_class") or "simple"
        if order_class != "simple":
            raise _invalid(f"order_class {order_class} is not supported by the simulator")
        notional = _notional(body, kind, tif)
        qty: Decimal | None = _decimal(body.get("qty"), "qty")
        if notional is not None:
            qty = (notional / self.price(symbol)).quantize(_FRACTION, rounding=ROUND_DOWN)
        if qty is None or qty <= 0:
            raise _invalid("qty must be > 0")
        if qty != qty.to_integral_value() and not (kind == "market" and tif == "day"):
            raise _invalid("fractional orders must be DAY market orders")
        limit = _price(body.get("limit_price"), "limit_price")
        stop = _price(body.get("stop_price"), "stop_price")
        if kind in ("limit", "stop_limit") and limit is None:
            raise _invalid(f"limit_price is required for {kind} orders")
        if kind in ("stop", "stop_limit") and stop is None:
            raise _invalid(f"stop_price is required for {kind} orders")
        if kind in ("market", "stop") and limit is not None:
            raise _invalid(f"limit_price is not allowed for {kind} orders")
        if kind in ("market", "limit") and stop is not None:
            raise _invalid(f"stop_price is not allowed for {kind} orders")
        extended = bool(body.get("extended_hours", False))
        if extended and not (kind == "limit" and tif == "day"):
            raise _invalid("extended hours order must be DAY limit orders")
        coid = body.get("client_order_id") or str(self._uuid())
        if not isinstance(coid, str) or len(coid) > MAX_CLIENT_ORDER_ID:
            raise _invalid(f"client_order_id must be no more than {MAX_CLIENT_ORDER_ID} characters")
        if coid in self.by_client:
            raise ApiError(422, 40010001, "client_order_id must be unique")
        self._check_funds(symbol, side, qty, kind, limit, stop)
        return self._place(
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
        )

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
    ) -> SimOrder:
        """Put a checked order on the book, publish ``new`` and start working it."""
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
        )
        self.orders[order.id] = order
        self.by_client[coid] = order.id
        self.stats.orders_created += 1
        self._event("new", order)
        self._consider(order, arriving=True)
        return order

    def close_position(self, symbol: str, query: dict[str, str]) -> SimOrder:
        """``DELETE /v2/positions/{symbol}``: a market order selling all, ``qty`` or ``percentage``."""
        holding = self.holdings.get(symbol)
        if holding is None:
            raise ApiError(404, 40410000, "position does not exist")
        if "qty" in query and "percentage" in query:
            raise _invalid("only one of qty or percentage may be given")
        qty = holding.qty
        if "qty" in query:
            qty = _decimal(query["qty"], "qty") or Decimal(0)
        elif "percentage" in query:
            share = _decimal(query["percentage"], "percentage") or Decimal(0)
            if not 0 < share <= 100:
                raise _invalid("percentage must be in (0, 100]")
            qty = (holding.qty * share / 100).quantize(_FRACTION, rounding=ROUND_DOWN)
        if qty <= 0:
            raise _invalid("qty must be > 0")
        self._check_funds(symbol, "sell", qty, "market", None, None)
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
        """Cancel an open order (404 unknown, 422 when already final)."""
        order = self.get(order_id)
        if order.status not in OPEN:
            raise ApiError(422, 42210000, f'order is already in "{order.status}" state')
        self._finish(order, "canceled")

    def cancel_all(self) -> list[dict[str, Any]]:
        """Cancel every open order; the 207 body."""
        results = []
        for order in [o for o in self.orders.values() if o.status in OPEN]:
            self._finish(order, "canceled")
            results.append({"id": order.id, "status": 200, "body": order.to_json()})
        return results

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move a price; resting orders that now cross start filling."""
        if not price.is_finite() or price <= 0:
            raise ValueError("price must be positive")
        self.prices[symbol] = price
        for order in list(self.orders.values()):
            if order.symbol == symbol and order.status in OPEN:
                self._consider(order, arriving=False)

    def set_market_open(self, is_open: bool) -> None:
        """Open or close the market; opening starts work on waiting orders."""
        self.market_open = is_open
        if is_open:
            for order in list(self.orders.values()):
                if order.status in OPEN:
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
        if order.status not in OPEN:
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
        if not self.market_open or order.status not in OPEN:
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
        order.status = "filled" if done else "partially_filled"
        if done:
            order.filled_ns = now
        self.stats.fills += 1
        self._event(
            "fill" if done else "partial_fill",
            order,
            price=format(price, "f"),
            qty=format(qty, "f"),
            position_qty=format(holding.qty if holding.qty else Decimal(0), "f"),
            execution_id=self._uuid(),
        )

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

    def _event(self, event: str, order: SimOrder, **extra: str) -> None:
        # Every event carries ``timestamp``: alpaca-py's TradeUpdate requires it.
        data: dict[str, Any] = {
            "event": event,
            "order": order.to_json(),
            "timestamp": ns_to_rfc3339(order.updated_ns),
        }
        data.update(extra)
        self.stats.events_published += 1
        self.publish({"stream": "trade_updates", "data": data})

    # -- money --------------------------------------------------------------

    def _reserved(self) -> Decimal:
        """Buying power held by open buy orders."""
        return sum(
            (
                o.remaining * (o.limit_price or o.stop_price or self.price(o.symbol))
                for o in self.orders.values()
                if o.status in OPEN and o.side == "buy"
            ),
            start=Decimal(0),
        )

    def _check_funds(
        self,
        symbol: str,
        side: str,
        qty: Decimal,
        kind: str,
        limit: Decimal | None,
        stop: Decimal | None,
    ) -> None:
        if side == "buy":
            cost = qty * (limit or stop or self.price(symbol))
            if cost > self.cash - self._reserved():
                raise ApiError(403, 40310000, "insufficient buying power")
            return
        holding = self.holdings.get(symbol, _Holding())
        held = sum(
            (o.remaining for o in self.orders.values() if _sell_hold(o, symbol)),
            start=Decimal(0),
        )
        available = holding.qty - held
        if qty > available:
            raise ApiError(
                403,
                40310000,
                f"insufficient qty available for order (requested: {qty}, available: {available})",
                available=format(available, "f"),
                existing_qty=format(holding.qty, "f"),
                held_for_orders=format(held, "f"),
                symbol=symbol,
            )

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _asset_id(self, symbol: str) -> str:
        return str(uuid.UUID(int=zlib.crc32(symbol.encode()) << 64 | 0xA1, version=4))


def _sell_hold(order: SimOrder, symbol: str) -> bool:
    return order.symbol == symbol and order.side == "sell" and order.status in OPEN


def _slices(qty: Decimal, n: int) -> list[Decimal]:
    if n <= 1 or qty < n or qty != qty.to_integral_value():
        return [qty]
    base = (qty / n).to_integral_value(rounding=ROUND_DOWN)
    return [base] * (n - 1) + [qty - base * (n - 1)]


def _decimal(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _invalid(f"{name} must be a decimal string")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _invalid(f"invalid {name} {value!r}") from None
    if not number.is_finite():
        raise _invalid(f"invalid {name} {value!r}")
    return number


def _notional(body: dict[str, Any], kind: str, tif: str) -> Decimal | None:
    """The dollar amount of a notional order (``None``: a qty order), checked as Alpaca does."""
    notional = _decimal(body.get("notional"), "notional")
    if notional is None:
        return None
    if body.get("qty") is not None:
        raise _invalid("qty and notional must not both be given")
    if kind != "market" or tif != "day":
        raise _invalid("notional orders must be DAY market orders")
    if notional <= 0 or notional.as_tuple().exponent < -2:  # type: ignore[operator]
        raise _invalid("notional must be > 0 with at most two decimal places")
    return notional


def _price(value: Any, name: str) -> Decimal | None:
    price = _decimal(value, name)
    if price is None:
        return None
    if price <= 0:
        raise _invalid(f"{name} must be > 0")
    places = -price.normalize().as_tuple().exponent  # type: ignore[operator]
    if places > (2 if price >= 1 else 4):
        raise _invalid("sub-penny increment does not fulfill minimum pricing criteria")
    return price


def _query_time(query: dict[str, str], name: str) -> int | None:
    text = query.get(name)
    if not text:
        return None
    try:
        return rfc3339_to_ns(text)
    except ValueError:
        raise _invalid(f"{name} must be an RFC 3339 timestamp") from None
