"""The simulated OANDA account: orders, trades, positions and the transaction log.

Everything that changes the account is a transaction with the next id, as at
OANDA, and every new transaction is handed to the listeners (the transaction
streams). Methods return ``(http_status, body)`` in v20's shapes, with times
still as nanoseconds (``oanda_wire.render`` formats them per request).

Model, kept small but honest: netting (``hedgingEnabled`` false), trades
closed first-in first-out, fills at the current bid/ask, margin at
``margin_rate`` of the position value in the home currency, no financing or
commission. Choices where v20's documentation is silent: an IOC or FOK
limit/stop that cannot fill at once is cancelled with reason
``INSUFFICIENT_LIQUIDITY``; a cancel of an order that is not pending gets 404
``ORDER_DOESNT_EXIST``; ``GFD`` orders do not expire inside the simulator.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ult_actors.sim.oanda_prices import Instrument, PriceFeed, Quote
from ult_actors.sim.oanda_wire import money, parse_time, units

Reply = tuple[int, dict[str, Any]]
Transaction = dict[str, Any]

ORDER_TYPES = ("MARKET", "LIMIT", "STOP", "MARKET_IF_TOUCHED")
_TIFS_BY_TYPE = {
    "MARKET": ("FOK", "IOC"),
    "LIMIT": ("GTC", "GTD", "GFD", "FOK", "IOC"),
    "STOP": ("GTC", "GTD", "GFD", "FOK", "IOC"),
    "MARKET_IF_TOUCHED": ("GTC", "GTD", "GFD"),
}
_POSITION_FILLS = ("DEFAULT", "OPEN_ONLY", "REDUCE_FIRST", "REDUCE_ONLY")
_TRIGGER_CONDITIONS = ("DEFAULT", "INVERSE", "BID", "ASK", "MID")
_MAX_UNITS = Decimal(100_000_000)
_MAX_PENDING = 500
_MAX_CLIENT_ID = 128
#: Transactions returned by one ``sinceid`` call at most; the caller asks again.
SINCE_ID_PAGE = 1000


class _Reject(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class SimOrder:
    """A v20 order (one of the four entry order types)."""

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


class OandaBook:
    """One simulated account."""

    def __init__(
        self,
        account_id: str,
        *,
        feed: PriceFeed,
        now_ns: Callable[[], int],
        balance: Decimal = Decimal(100_000),
        margin_rate: Decimal = Decimal("0.02"),
        currency: str = "USD",
        user_id: int = 1_000_001,
    ) -> None:
        self.account_id = account_id
        self.feed = feed
        self.now_ns = now_ns
        self.currency = currency
        self.margin_rate = margin_rate
        self.user_id = user_id
        self.balance = Decimal(0)
        self.realized_pl = Decimal(0)
        self.created_ns = now_ns()
        self.transactions: list[Transaction] = []
        self.orders: dict[str, SimOrder] = {}
        self.by_client_id: dict[str, str] = {}
        self.trades: dict[str, SimTrade] = {}
        self.position_pl: dict[str, Decimal] = {}
        self.last_fill_ns: int | None = None
        #: Called with each new transaction (the streams subscribe here).
        self.listeners: list[Callable[[Transaction], None]] = []
        self._request_ids = itertools.count(1)
        self._txn(
            "CREATE",
            divisionID=1,
            siteID=101,
            accountUserID=user_id,
            accountNumber=1,
            homeCurrency=currency,
        )
        self.balance = balance
        self._txn(
            "TRANSFER_FUNDS",
            amount=money(balance),
            fundingReason="CLIENT_FUNDING",
            accountBalance=money(balance),
        )

    # -- transactions -------------------------------------------------------

    @property
    def last_id(self) -> str:
        return str(len(self.transactions))

    def _txn(self, type_: str, *, batch: str | None = None, **fields: Any) -> Transaction:
        txn_id = str(len(self.transactions) + 1)
        txn: Transaction = {
            "id": txn_id,
            "time": self.now_ns(),
            "userID": self.user_id,
            "accountID": self.account_id,
            "batchID": batch or txn_id,
            "requestID": f"6{next(self._request_ids):017d}",
            "type": type_,
            **fields,
        }
        self.transactions.append(txn)
        for listener in list(self.listeners):
            listener(txn)
        return txn

    def transactions_since(self, since: str) -> Reply:
        """``GET .../transactions/sinceid?id=N``: transactions after N, oldest first."""
        try:
            start = int(since)
        except ValueError:
            return 400, {"errorMessage": "Invalid value specified for 'id'"}
        if start < 0 or start > len(self.transactions):
            return 416, {"errorMessage": f"Transaction ID {since} is out of range"}
        page = self.transactions[start : start + SINCE_ID_PAGE]
        return 200, {"transactions": page, "lastTransactionID": self.last_id}

    def transaction(self, txn_id: str) -> Reply:
        """``GET .../transactions/{id}``."""
        if txn_id.isdigit() and 1 <= int(txn_id) <= len(self.transactions):
            return 200, {
                "transaction": self.transactions[int(txn_id) - 1],
                "lastTransactionID": self.last_id,
            }
        return 404, {"errorMessage": f"Transaction {txn_id} does not exist"}

    # -- orders -------------------------------------------------------------

    def create_order(self, payload: Any) -> Reply:
        """``POST .../orders`` with body ``{"order": {...}}``."""
        spec = payload.get("order") if isinstance(payload, dict) else None
        if not isinstance(spec, dict):
            return 400, {"errorMessage": "Invalid value specified for 'order'"}
        order_type = spec.get("type")
        if order_type not in ORDER_TYPES:
            return 400, {"errorMessage": "Invalid value specified for 'order.type'"}
        try:
            order = self._parse_order(spec, order_type)
        except _Reject as reject:
            txn = self._txn(
                f"{order_type}_ORDER_REJECT",
                **_echo(spec),
                reason="CLIENT_ORDER",
                rejectReason=reject.reason,
            )
            return 400, {
                "orderRejectTransaction": txn,
                "relatedTransactionIDs": [txn["id"]],
                "lastTransactionID": self.last_id,
                "errorCode": reject.reason,
                "errorMessage": reject.message,
            }
        fields = _order_fields(order, self._inst(order))
        del fields["type"]  # the transaction's type says which order it creates
        create = self._txn(f"{order_type}_ORDER", **fields, reason="CLIENT_ORDER")
        order.id = create["id"]
        self.orders[order.id] = order
        if order.client_extensions and "id" in order.client_extensions:
            self.by_client_id[order.client_extensions["id"]] = order.id
        body: dict[str, Any] = {"orderCreateTransaction": create}
        related = [create["id"]]
        outcome = self._execute_on_create(order, batch=create["id"])
        if outcome is not None:
            key = (
                "orderFillTransaction"
                if outcome["type"] == "ORDER_FILL"
                else "orderCancelTransaction"
            )
            body[key] = outcome
            related.append(outcome["id"])
        body["relatedTransactionIDs"] = related
        body["lastTransactionID"] = self.last_id
        return 201, body

    def _parse_order(self, spec: dict[str, Any], order_type: str) -> SimOrder:
        name = spec.get("instrument")
        if not name:
            raise _Reject("INSTRUMENT_MISSING", "The order has no instrument")
        instrument = self.feed.instruments.get(str(name))
        if instrument is None:
            raise _Reject("INSTRUMENT_UNKNOWN", f"The instrument {name} is unknown")
        if "units" not in spec:
            raise _Reject("UNITS_MISSING", "The order has no units")
        amount = _decimal(spec["units"])
        if amount is None or amount == 0:
            raise _Reject("UNITS_INVALID", "The order's units must be a non-zero number")
        if amount != amount.to_integral_value():
            raise _Reject("UNITS_PRECISION_EXCEEDED", f"{name} trades in whole units")
        if abs(amount) > _MAX_UNITS:
            raise _Reject("UNITS_LIMIT_EXCEEDED", "The order's units exceed the maximum")
        price = None
        if order_type != "MARKET":
            if "price" not in spec:
                raise _Reject("PRICE_MISSING", "The order has no price")
            price = self._price(spec["price"], instrument, "PRICE")
        bound = None
        if spec.get("priceBound") is not None and order_type != "LIMIT":
            bound = self._price(spec["priceBound"], instrument, "PRICE_BOUND")
        tif = spec.get("timeInForce") or ("FOK" if order_type == "MARKET" else "GTC")
        if tif not in _TIFS_BY_TYPE[order_type]:
            raise _Reject(
                "TIME_IN_FORCE_INVALID", f"timeInForce {tif} is not allowed for {order_type} orders"
            )
        gtd_ns = None
        if tif == "GTD":
            if not spec.get("gtdTime"):
                raise _Reject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING", "GTD orders need a gtdTime")
            try:
                gtd_ns = parse_time(str(spec["gtdTime"]))
            except ValueError:
                raise _Reject(
                    "TIME_IN_FORCE_GTD_TIMESTAMP_INVALID", "gtdTime is not a time"
                ) from None
            if gtd_ns <= self.now_ns():
                raise _Reject("TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST", "gtdTime is in the past")
        position_fill = _strip(spec.get("positionFill") or "DEFAULT", "POSITION_")
        if position_fill not in _POSITION_FILLS:
            raise _Reject("POSITION_FILL_INVALID", f"positionFill {position_fill} is not valid")
        trigger = _strip(spec.get("triggerCondition") or "DEFAULT", "TRIGGER_")
        if trigger not in _TRIGGER_CONDITIONS:
            raise _Reject("TRIGGER_CONDITION_INVALID", f"triggerCondition {trigger} is not valid")
        extensions = spec.get("clientExtensions")
        if extensions is not None:
            if not isinstance(extensions, dict) or not all(
                isinstance(v, str) for v in extensions.values()
            ):
                raise _Reject(
                    "CLIENT_ORDER_ID_INVALID", "clientExtensions must map names to strings"
                )
            client_id = extensions.get("id")
            if client_id is not None:
                if not client_id or len(client_id) > _MAX_CLIENT_ID or client_id.startswith("@"):
                    raise _Reject("CLIENT_ORDER_ID_INVALID", "clientExtensions.id is not valid")
                if client_id in self.by_client_id:
                    raise _Reject(
                        "CLIENT_ORDER_ID_ALREADY_EXISTS",
                        f"An order with client id {client_id} already exists",
                    )
        if order_type != "MARKET" and tif not in ("FOK", "IOC"):
            pending = sum(1 for o in self.orders.values() if o.state == "PENDING")
            if pending >= _MAX_PENDING:
                raise _Reject("PENDING_ORDERS_ALLOWED_EXCEEDED", "Too many pending orders")
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
            client_extensions=dict(extensions) if extensions else None,
            create_ns=self.now_ns(),
        )

    @staticmethod
    def _price(raw: Any, instrument: Instrument, what: str) -> Decimal:
        value = _decimal(raw)
        if value is None or value <= 0:
            raise _Reject(f"{what}_INVALID", f"{what.lower()} {raw!r} is not a positive number")
        if value.as_tuple().exponent < -instrument.display_precision:  # type: ignore[operator]
            raise _Reject(
                f"{what}_PRECISION_EXCEEDED",
                f"{instrument.name} prices have at most {instrument.display_precision} decimals",
            )
        return value

    def _inst(self, order: SimOrder) -> Instrument:
        return self.feed.instruments[order.instrument]

    def _execute_on_create(self, order: SimOrder, *, batch: str) -> Transaction | None:
        """Fill or cancel at once when the order says so; ``None`` if it rests."""
        quote = self.feed.quote(order.instrument)
        if order.type == "MARKET" or self._triggered(order, quote):
            return self._fill(order, quote, batch=batch)
        if order.time_in_force in ("FOK", "IOC"):
            return self._cancel(order, "INSUFFICIENT_LIQUIDITY", batch=batch)
        return None

    def _triggered(self, order: SimOrder, quote: Quote) -> bool:
        assert order.price is not None
        buy = order.units > 0
        condition = order.trigger_condition
        if condition == "BID":
            seen = quote.bid
        elif condition == "ASK":
            seen = quote.ask
        elif condition == "MID":
            seen = quote.mid
        else:
            # DEFAULT: the side the order would trade on; INVERSE: the other one.
            seen = quote.ask if buy == (condition == "DEFAULT") else quote.bid
        if order.type == "STOP":
            return seen >= order.price if buy else seen <= order.price
        return seen <= order.price if buy else seen >= order.price  # LIMIT, MIT

    def cancel_order(self, specifier: str) -> Reply:
        """``PUT .../orders/{specifier}/cancel``."""
        order = self.find(specifier)
        if order is None or order.state != "PENDING":
            txn = self._txn(
                "ORDER_CANCEL_REJECT",
                orderID=order.id if order else specifier,
                **({"clientOrderID": _client_id(order)} if order and _client_id(order) else {}),
                reason="CLIENT_REQUEST",
                rejectReason="ORDER_DOESNT_EXIST",
            )
            return 404, {
                "orderCancelRejectTransaction": txn,
                "relatedTransactionIDs": [txn["id"]],
                "lastTransactionID": self.last_id,
                "errorCode": "ORDER_DOESNT_EXIST",
                "errorMessage": "The order specified does not exist or is not pending",
            }
        txn = self._cancel(order, "CLIENT_REQUEST")
        return 200, {
            "orderCancelTransaction": txn,
            "relatedTransactionIDs": [txn["id"]],
            "lastTransactionID": self.last_id,
        }

    def _cancel(self, order: SimOrder, reason: str, *, batch: str | None = None) -> Transaction:
        txn = self._txn(
            "ORDER_CANCEL",
            batch=batch,
            orderID=order.id,
            **({"clientOrderID": _client_id(order)} if _client_id(order) else {}),
            reason=reason,
        )
        order.state = "CANCELLED"
        order.cancelling_txn = txn["id"]
        order.cancelled_ns = txn["time"]
        return txn

    def find(self, specifier: str) -> SimOrder | None:
        """An order by id or by ``@clientID``."""
        if specifier.startswith("@"):
            order_id = self.by_client_id.get(specifier[1:])
            return self.orders.get(order_id) if order_id else None
        return self.orders.get(specifier)

    def get_order(self, specifier: str) -> Reply:
        order = self.find(specifier)
        if order is None:
            return 404, {
                "errorCode": "NO_SUCH_ORDER",
                "errorMessage": "The order specified does not exist",
            }
        return 200, {"order": self.order_wire(order), "lastTransactionID": self.last_id}

    def list_orders(self, query: dict[str, str], *, pending_only: bool = False) -> Reply:
        state = "PENDING" if pending_only else query.get("state", "PENDING").upper()
        if state not in ("PENDING", "FILLED", "TRIGGERED", "CANCELLED", "ALL"):
            return 400, {"errorMessage": "Invalid value specified for 'state'"}
        try:
            count = min(int(query.get("count", "50")), 500)
        except ValueError:
            return 400, {"errorMessage": "Invalid value specified for 'count'"}
        ids = set(filter(None, query.get("ids", "").split(",")))
        instrument = query.get("instrument")
        chosen = [
            o
            for o in sorted(self.orders.values(), key=lambda o: int(o.id), reverse=True)
            if (state == "ALL" or o.state == state)
            and (not ids or o.id in ids)
            and (not instrument or o.instrument == instrument)
        ]
        if not pending_only:
            chosen = chosen[: max(0, count)]  # pendingOrders has no count: it lists them all
        orders = [self.order_wire(o) for o in chosen]
        return 200, {"orders": orders, "lastTransactionID": self.last_id}

    def order_wire(self, order: SimOrder) -> dict[str, Any]:
        """The order as v20 shows it in ``GET`` replies."""
        wire: dict[str, Any] = {
            "id": order.id,
            "createTime": order.create_ns,
            "state": order.state,
            **_order_fields(order, self._inst(order)),
        }
        if order.filling_txn:
            wire.update(fillingTransactionID=order.filling_txn, filledTime=order.filled_ns)
            if order.trade_opened:
                wire["tradeOpenedID"] = order.trade_opened
            if order.trade_reduced:
                wire["tradeReducedID"] = order.trade_reduced
            if order.trades_closed:
                wire["tradeClosedIDs"] = list(order.trades_closed)
        if order.cancelling_txn:
            wire.update(
                cancellingTransactionID=order.cancelling_txn, cancelledTime=order.cancelled_ns
            )
        return wire

    # -- fills --------------------------------------------------------------

    def _fill(self, order: SimOrder, quote: Quote, *, batch: str | None = None) -> Transaction:
        """Fill the whole order at the touch, or cancel it with the reason it cannot."""
        instrument = self._inst(order)
        buy = order.units > 0
        price = quote.ask if buy else quote.bid
        if order.price_bound is not None and (
            (buy and price > order.price_bound) or (not buy and price < order.price_bound)
        ):
            return self._cancel(order, "BOUNDS_VIOLATION", batch=batch)
        net = self._net(order.instrument)
        if abs(net + order.units) > abs(net):
            rate = self.feed.home_rate(instrument.quote, self.currency)
            extra = (abs(net + order.units) - abs(net)) * price * rate * self.margin_rate
            if self.margin_used() + extra > self.nav():
                return self._cancel(order, "INSUFFICIENT_MARGIN", batch=batch)
        return self._apply_fill(order, instrument, price, quote, batch=batch)

    def _apply_fill(
        self,
        order: SimOrder,
        instrument: Instrument,
        price: Decimal,
        quote: Quote,
        *,
        batch: str | None,
    ) -> Transaction:
        rate = self.feed.home_rate(instrument.quote, self.currency)
        remaining = order.units
        fill_id = str(len(self.transactions) + 1)  # the id the fill transaction will get
        closed: list[dict[str, Any]] = []
        reduced: dict[str, Any] | None = None
        realized = Decimal(0)
        for trade in self._open_trades(order.instrument):
            if remaining == 0 or (trade.current_units > 0) == (remaining > 0):
                break
            take = min(abs(remaining), abs(trade.current_units))
            closing = take if trade.current_units > 0 else -take  # trade-signed units closed
            pl = (price - trade.price) * closing * rate
            realized += pl
            trade.current_units -= closing
            trade.realized_pl += pl
            trade.closing_txns.append(fill_id)
            remaining += closing
            entry = {
                "tradeID": trade.id,
                "units": units(-closing),
                "price": _px(price, instrument),
                "realizedPL": money(pl),
                "financing": money(Decimal(0)),
                "guaranteedExecutionFee": money(Decimal(0)),
                "halfSpreadCost": money(take * (quote.ask - quote.bid) / 2 * rate),
            }
            if trade.current_units == 0:
                trade.close_ns = self.now_ns()
                closed.append(entry)
            else:
                reduced = entry
        opened = None
        if remaining != 0:
            trade = SimTrade(
                id=fill_id,
                instrument=order.instrument,
                price=price,
                open_ns=self.now_ns(),
                initial_units=remaining,
                current_units=remaining,
            )
            self.trades[trade.id] = trade
            opened = {
                "tradeID": trade.id,
                "units": units(remaining),
                "price": _px(price, instrument),
                "guaranteedExecutionFee": money(Decimal(0)),
                "halfSpreadCost": money(abs(remaining) * (quote.ask - quote.bid) / 2 * rate),
                "initialMarginRequired": money(abs(remaining) * price * rate * self.margin_rate),
            }
        self.balance += realized
        self.realized_pl += realized
        self.position_pl[order.instrument] = (
            self.position_pl.get(order.instrument, Decimal(0)) + realized
        )
        fields: dict[str, Any] = {
            "orderID": order.id,
            "instrument": order.instrument,
            "units": units(order.units),
            "requestedUnits": units(order.units),
            "price": _px(price, instrument),
            "fullVWAP": _px(price, instrument),
            "fullPrice": self._price_wire(instrument, quote),
            "reason": f"{order.type}_ORDER",
            "pl": money(realized),
            "quotePL": f"{(realized / rate) if rate else realized:f}",
            "financing": money(Decimal(0)),
            "baseFinancing": "0",
            "commission": money(Decimal(0)),
            "guaranteedExecutionFee": money(Decimal(0)),
            "accountBalance": money(self.balance),
            "halfSpreadCost": money(abs(order.units) * (quote.ask - quote.bid) / 2 * rate),
            "gainQuoteHomeConversionFactor": f"{rate:f}",
            "lossQuoteHomeConversionFactor": f"{rate:f}",
        }
        if _client_id(order):
            fields["clientOrderID"] = _client_id(order)
        if opened:
            fields["tradeOpened"] = opened
        if closed:
            fields["tradesClosed"] = closed
        if reduced:
            fields["tradeReduced"] = reduced
        txn = self._txn("ORDER_FILL", batch=batch, **fields)
        assert txn["id"] == fill_id
        order.state = "FILLED"
        order.filling_txn = txn["id"]
        order.filled_ns = txn["time"]
        order.trade_opened = opened["tradeID"] if opened else None
        order.trade_reduced = reduced["tradeID"] if reduced else None
        order.trades_closed = [c["tradeID"] for c in closed]
        self.last_fill_ns = txn["time"]
        return txn

    def _price_wire(self, instrument: Instrument, quote: Quote) -> dict[str, Any]:
        return {
            "type": "PRICE",
            "instrument": instrument.name,
            "time": self.now_ns(),
            "status": "tradeable",
            "tradeable": True,
            "bids": [{"price": _px(quote.bid, instrument), "liquidity": 10_000_000}],
            "asks": [{"price": _px(quote.ask, instrument), "liquidity": 10_000_000}],
            "closeoutBid": _px(quote.bid, instrument),
            "closeoutAsk": _px(quote.ask, instrument),
        }

    def price(self, instrument: str) -> dict[str, Any]:
        """One ``PRICE`` object (pricing endpoints)."""
        inst = self.feed.instruments[instrument]
        return self._price_wire(inst, self.feed.quote(instrument))

    # -- time passing ---------------------------------------------------------

    def on_prices(self) -> None:
        """After the feed moved: fill triggered orders, expire GTD ones."""
        now = self.now_ns()
        for order in sorted(self.orders.values(), key=lambda o: int(o.id)):
            if order.state != "PENDING":
                continue
            if order.gtd_ns is not None and order.gtd_ns <= now:
                self._cancel(order, "TIME_IN_FORCE_EXPIRED")
            elif self._triggered(order, self.feed.quote(order.instrument)):
                self._fill(order, self.feed.quote(order.instrument))

    # -- positions, trades, account -------------------------------------------

    def _open_trades(self, instrument: str) -> list[SimTrade]:
        return [
            t for t in self.trades.values() if t.instrument == instrument and t.current_units != 0
        ]

    def _net(self, instrument: str) -> Decimal:
        return sum((t.current_units for t in self._open_trades(instrument)), Decimal(0))

    def _unrealized(self, trade: SimTrade) -> Decimal:
        instrument = self.feed.instruments[trade.instrument]
        quote = self.feed.quote(trade.instrument)
        close = quote.bid if trade.current_units > 0 else quote.ask
        rate = self.feed.home_rate(instrument.quote, self.currency)
        return (close - trade.price) * trade.current_units * rate

    def _value(self, instrument: str, amount: Decimal) -> Decimal:
        inst = self.feed.instruments[instrument]
        rate = self.feed.home_rate(inst.quote, self.currency)
        return abs(amount) * self.feed.quote(instrument).mid * rate

    def margin_used(self) -> Decimal:
        return sum(
            (self._value(i, self._net(i)) * self.margin_rate for i in self._traded()), Decimal(0)
        )

    def unrealized_pl(self) -> Decimal:
        return sum(
            (self._unrealized(t) for t in self.trades.values() if t.current_units != 0), Decimal(0)
        )

    def nav(self) -> Decimal:
        return self.balance + self.unrealized_pl()

    def _traded(self) -> list[str]:
        return sorted({t.instrument for t in self.trades.values()})

    def position_wire(self, instrument: str) -> dict[str, Any]:
        inst = self.feed.instruments[instrument]
        open_trades = self._open_trades(instrument)
        sides = {}
        for name, trades in (
            ("long", [t for t in open_trades if t.current_units > 0]),
            ("short", [t for t in open_trades if t.current_units < 0]),
        ):
            total = sum((t.current_units for t in trades), Decimal(0))
            side_pl = sum(
                (
                    t.realized_pl
                    for t in self.trades.values()
                    if t.instrument == instrument and (t.initial_units > 0) == (name == "long")
                ),
                Decimal(0),
            )
            side: dict[str, Any] = {
                "units": units(total),
                "pl": money(side_pl),
                "resettablePL": "0.0000",
                "financing": money(Decimal(0)),
                "guaranteedExecutionFees": money(Decimal(0)),
                "unrealizedPL": money(sum((self._unrealized(t) for t in trades), Decimal(0))),
            }
            if total:
                vwap = sum((t.price * t.current_units for t in trades), Decimal(0)) / total
                side["averagePrice"] = _px(vwap, inst, extra=1)
                side["tradeIDs"] = [t.id for t in trades]
            sides[name] = side
        unrealized = sum((self._unrealized(t) for t in open_trades), Decimal(0))
        pl = self.position_pl.get(instrument, Decimal(0))
        return {
            "instrument": instrument,
            "pl": money(pl),
            "unrealizedPL": money(unrealized),
            "marginUsed": money(self._value(instrument, self._net(instrument)) * self.margin_rate),
            "resettablePL": money(pl),
            "financing": money(Decimal(0)),
            "commission": money(Decimal(0)),
            "dividendAdjustment": money(Decimal(0)),
            "guaranteedExecutionFees": money(Decimal(0)),
            **sides,
        }

    def positions(self, *, open_only: bool) -> Reply:
        names = [i for i in self._traded() if not open_only or self._net(i) != 0]
        return 200, {
            "positions": [self.position_wire(i) for i in names],
            "lastTransactionID": self.last_id,
        }

    def position(self, instrument: str) -> Reply:
        if instrument not in self.feed.instruments:
            return 404, {"errorMessage": f"The instrument {instrument} is unknown"}
        return 200, {"position": self.position_wire(instrument), "lastTransactionID": self.last_id}

    def trades_wire(self, *, open_only: bool) -> Reply:
        chosen = [
            t
            for t in sorted(self.trades.values(), key=lambda t: int(t.id), reverse=True)
            if not open_only or t.current_units != 0
        ]
        out = []
        for t in chosen:
            inst = self.feed.instruments[t.instrument]
            out.append(
                {
                    "id": t.id,
                    "instrument": t.instrument,
                    "price": _px(t.price, inst),
                    "openTime": t.open_ns,
                    "state": "OPEN" if t.current_units else "CLOSED",
                    "initialUnits": units(t.initial_units),
                    "currentUnits": units(t.current_units),
                    "realizedPL": money(t.realized_pl),
                    "unrealizedPL": money(self._unrealized(t) if t.current_units else Decimal(0)),
                    "marginUsed": money(
                        self._value(t.instrument, t.current_units) * self.margin_rate
                    ),
                    "financing": money(Decimal(0)),
                    **(
                        {"closeTime": t.close_ns, "closingTransactionIDs": t.closing_txns}
                        if t.close_ns
                        else {}
                    ),
                }
            )
        return 200, {"trades": out, "lastTransactionID": self.last_id}

    def summary(self) -> dict[str, Any]:
        """The ``AccountSummary`` object."""
        unrealized = self.unrealized_pl()
        nav = self.balance + unrealized
        used = self.margin_used()
        available = max(Decimal(0), nav - used)
        position_value = sum((self._value(i, self._net(i)) for i in self._traded()), Decimal(0))
        percent = (used / 2 / nav) if nav > 0 else Decimal(0)
        summary: dict[str, Any] = {
            "id": self.account_id,
            "alias": "ult simulator",
            "currency": self.currency,
            "balance": money(self.balance),
            "createdByUserID": self.user_id,
            "createdTime": self.created_ns,
            "guaranteedStopLossOrderMode": "DISABLED",
            "pl": money(self.realized_pl),
            "resettablePL": money(self.realized_pl),
            "financing": money(Decimal(0)),
            "commission": money(Decimal(0)),
            "dividendAdjustment": money(Decimal(0)),
            "guaranteedExecutionFees": money(Decimal(0)),
            "marginRate": f"{self.margin_rate:f}",
            "openTradeCount": sum(1 for t in self.trades.values() if t.current_units),
            "openPositionCount": sum(1 for i in self._traded() if self._net(i)),
            "pendingOrderCount": sum(1 for o in self.orders.values() if o.state == "PENDING"),
            "hedgingEnabled": False,
            "unrealizedPL": money(unrealized),
            "NAV": money(nav),
            "marginUsed": money(used),
            "marginAvailable": money(available),
            "positionValue": money(position_value),
            "marginCloseoutUnrealizedPL": money(unrealized),
            "marginCloseoutNAV": money(nav),
            "marginCloseoutMarginUsed": money(used),
            "marginCloseoutPercent": f"{percent.quantize(Decimal('0.00001')):f}",
            "marginCloseoutPositionValue": money(position_value),
            "withdrawalLimit": money(available),
            "marginCallMarginUsed": money(used),
            "marginCallPercent": f"{percent.quantize(Decimal('0.00001')):f}",
            "lastTransactionID": self.last_id,
        }
        if self.last_fill_ns is not None:
            summary["lastOrderFillTimestamp"] = self.last_fill_ns
        return summary

    def instruments_wire(self) -> list[dict[str, Any]]:
        return [
            {
                "name": i.name,
                "type": i.type,
                "displayName": i.name.replace("_", "/"),
                "pipLocation": -(i.display_precision - 1),
                "displayPrecision": i.display_precision,
                "tradeUnitsPrecision": 0,
                "minimumTradeSize": "1",
                "maximumTrailingStopDistance": "1.00000",
                "minimumTrailingStopDistance": "0.00050",
                "maximumPositionSize": "0",
                "maximumOrderUnits": units(_MAX_UNITS),
                "marginRate": f"{self.margin_rate:f}",
            }
            for i in self.feed.instruments.values()
        ]


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


def _px(value: Decimal, instrument: Instrument, *, extra: int = 0) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-(instrument.display_precision + extra))):f}"


def _client_id(order: SimOrder) -> str | None:
    return (order.client_extensions or {}).get("id")


def _echo(spec: dict[str, Any]) -> dict[str, Any]:
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
    )
    return {k: spec[k] for k in keys if k in spec and isinstance(spec[k], str | dict)}


def _order_fields(order: SimOrder, instrument: Instrument) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "type": order.type,
        "instrument": order.instrument,
        "units": units(order.units),
        "timeInForce": order.time_in_force,
        "positionFill": order.position_fill,
    }
    if order.price is not None:
        fields["price"] = _px(order.price, instrument)
        fields["triggerCondition"] = order.trigger_condition
    if order.price_bound is not None:
        fields["priceBound"] = _px(order.price_bound, instrument)
    if order.gtd_ns is not None:
        fields["gtdTime"] = order.gtd_ns
    if order.client_extensions:
        fields["clientExtensions"] = dict(order.client_extensions)
    if order.type in ("LIMIT", "STOP", "MARKET_IF_TOUCHED"):
        fields["partialFill"] = "DEFAULT_FILL"
    return fields
