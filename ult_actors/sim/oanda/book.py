"""The simulated OANDA account: orders, trades, positions and the transaction log.

Everything that changes the account is a transaction with the next id, as at
OANDA, and every new transaction is handed to the listeners (the transaction
streams). Methods return ``(http_status, body)`` in v20's shapes, with times
still as nanoseconds (``wire.render`` formats them per request).

Model, kept small but honest: netting (``hedgingEnabled`` false), trades
closed first-in first-out, fills at the current bid/ask, margin at
``margin_rate`` of the position value in the home currency, no financing; a
commission of ``commission_per_100k`` (home currency per 100,000 units, as
OANDA's core pricing charges it, 0 by default) on every fill. Choices where v20's documentation is silent: an IOC or FOK
limit/stop that cannot fill at once is cancelled with reason
``INSUFFICIENT_LIQUIDITY``; a cancel of an order that is not pending gets 404
``ORDER_DOESNT_EXIST``; ``GFD`` orders do not expire inside the simulator.

Orders on a trade, as v20 has them: an entry's ``takeProfitOnFill`` /
``stopLossOnFill`` / ``trailingStopLossOnFill`` become TAKE_PROFIT /
STOP_LOSS / TRAILING_STOP_LOSS orders (reason ``ON_FILL``) on the trade its
fill opens, in the fill's batch; such orders can also be placed on an open
trade (``tradeID``). The first to fill closes the trade, and every order
still on a closed trade is cancelled with ``LINKED_TRADE_CLOSED`` (so a take
profit and a stop loss on one trade are one-cancels-other). An entry whose
take profit or stop loss would be a loss at its fill price is cancelled
(``TAKE_PROFIT_ON_FILL_LOSS`` / ``STOP_LOSS_ON_FILL_LOSS``). A replace
(``PUT .../orders/{specifier}``) is a cancel and a create in one batch.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ult_actors.sim.oanda.orders import (
    DEPENDENT_TYPES,
    MAX_CLIENT_ID,
    ON_FILL_TYPES,
    ORDER_TYPES,
    Reject,
    SimOrder,
    SimTrade,
    dependent_order,
    echo,
    on_fill_loss,
    order_fields,
    parse_dependent,
    parse_order,
    parse_units,
)
from ult_actors.sim.oanda.prices import Instrument, PriceFeed, Quote
from ult_actors.sim.oanda.wire import money, units

Reply = tuple[int, dict[str, Any]]
Transaction = dict[str, Any]

#: Transactions returned by one ``sinceid`` call at most; the caller asks again.
SINCE_ID_PAGE = 1000


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
        commission_per_100k: Decimal = Decimal(0),
    ) -> None:
        self.account_id = account_id
        self.commission_per_100k = commission_per_100k
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
        spec = _order_spec(payload)
        if spec is None:
            return 400, {"errorMessage": "Invalid value specified for 'order'"}
        first = len(self.transactions)
        try:
            order = self._parse(spec)
        except Reject as reject:
            return self._rejected(spec, reject, reason="CLIENT_ORDER")
        create, outcome = self._enter(order, reason="CLIENT_ORDER")
        body = {"orderCreateTransaction": create}
        if order.replaced_by is not None:  # filled in part at once and reissued
            body["orderReissueTransaction"] = self.transactions[int(order.replaced_by) - 1]
        return self._created(body, outcome, first=first, cancel_key="orderCancelTransaction")

    def replace_order(self, specifier: str, payload: Any) -> Reply:
        """``PUT .../orders/{specifier}``: cancel a pending order and create its replacement.

        Both happen in one batch: an ``ORDER_CANCEL`` with reason
        ``CLIENT_REQUEST_REPLACED`` naming ``replacedByOrderID``, then the new
        order's create with reason ``REPLACEMENT`` naming ``replacesOrderID``.
        The replacement may reuse the old order's client id. An order that
        is no longer pending (filled, cancelled) is refused with 404 and
        ``ORDER_DOESNT_EXIST``, as a cancel would be; an invalid replacement
        with 400, the old order untouched.
        """
        spec = _order_spec(payload)
        if spec is None:
            return 400, {"errorMessage": "Invalid value specified for 'order'"}
        old = self.find(specifier)
        if old is None or old.state != "PENDING":
            return self._cancel_rejected(old, specifier, reason="CLIENT_REQUEST_REPLACED")
        first = len(self.transactions)
        try:
            new = self._parse(spec, replacing=old)
        except Reject as reject:
            return self._rejected(spec, reject, reason="REPLACEMENT", replacing=old)
        cancel = self._cancel(
            old, "CLIENT_REQUEST_REPLACED", replaced_by=str(len(self.transactions) + 2)
        )
        create, outcome = self._enter(
            new,
            reason="REPLACEMENT",
            batch=cancel["id"],
            replacesOrderID=old.id,
            cancellingTransactionID=cancel["id"],
        )
        assert old.replaced_by == create["id"]
        new.replaces = old.id
        body = {"orderCancelTransaction": cancel, "orderCreateTransaction": create}
        if new.replaced_by is not None:
            body["orderReissueTransaction"] = self.transactions[int(new.replaced_by) - 1]
        return self._created(
            body, outcome, first=first, cancel_key="replacingOrderCancelTransaction"
        )

    def _created(
        self,
        body: dict[str, Any],
        outcome: Transaction | None,
        *,
        first: int,
        cancel_key: str,
    ) -> Reply:
        """201 with the new order's immediate fill or cancel (under ``cancel_key``), if any."""
        if outcome is not None:
            key = "orderFillTransaction" if outcome["type"] == "ORDER_FILL" else cancel_key
            body[key] = outcome
        body.update(relatedTransactionIDs=self._ids_since(first), lastTransactionID=self.last_id)
        return 201, body

    def set_trade_orders(self, trade_id: str, payload: Any) -> Reply:
        """``PUT .../trades/{tradeID}/orders``: create, replace or cancel the orders on a trade.

        Each of ``takeProfit`` / ``stopLoss`` / ``trailingStopLoss`` present in
        the body creates that order on the trade, or replaces the one it has
        (a cancel ``CLIENT_REQUEST_REPLACED`` and a create ``REPLACEMENT``);
        ``null`` cancels it. Everything is checked first, so a refusal (400
        with ``<name>OrderRejectTransaction``) changes nothing; the rest
        happens in one batch.
        """
        trade = self.trades.get(trade_id)
        if trade is None or trade.current_units == 0:
            return 404, {
                "errorCode": "TRADE_DOESNT_EXIST",
                "errorMessage": f"The trade {trade_id} does not exist or is not open",
            }
        if not isinstance(payload, dict):
            return 400, {"errorMessage": "Invalid JSON in the request body"}
        plan: list[tuple[str, SimOrder | None, SimOrder | None]] = []
        for key, order_type in _TRADE_ORDER_FIELDS.items():
            if key not in payload:
                continue
            current = next(
                (o for o in self.pending() if o.trade_id == trade.id and o.type == order_type), None
            )
            details = payload[key]
            new = None
            if details is not None:
                if not isinstance(details, dict):
                    return 400, {"errorMessage": f"Invalid value specified for '{key}'"}
                spec = {**details, "type": order_type, "tradeID": trade.id}
                try:
                    new = self._parse(spec, replacing=current)
                except Reject as reject:
                    txn = self._txn(
                        f"{order_type}_ORDER_REJECT",
                        tradeID=trade.id,
                        reason="REPLACEMENT" if current else "CLIENT_ORDER",
                        rejectReason=reject.reason,
                    )
                    return 400, {
                        f"{key}OrderRejectTransaction": txn,
                        "relatedTransactionIDs": [txn["id"]],
                        "lastTransactionID": self.last_id,
                        "errorCode": reject.reason,
                        "errorMessage": reject.message,
                    }
            plan.append((key, current, new))
        first = len(self.transactions)
        batch = str(first + 1)
        body: dict[str, Any] = {}
        for key, current, new in plan:
            if trade.current_units == 0:
                break  # an earlier order of this request filled and closed the trade
            extra: dict[str, Any] = {}
            if current is not None:
                replaced_by = str(len(self.transactions) + 2) if new else None
                reason = "CLIENT_REQUEST_REPLACED" if new else "CLIENT_REQUEST"
                cancel = self._cancel(current, reason, batch=batch, replaced_by=replaced_by)
                body[f"{key}OrderCancelTransaction"] = cancel
                extra = {"replacesOrderID": current.id, "cancellingTransactionID": cancel["id"]}
            if new is None:
                continue
            reason = "REPLACEMENT" if current else "CLIENT_ORDER"
            create, outcome = self._enter(new, reason=reason, batch=batch, **extra)
            new.replaces = current.id if current else None
            body[f"{key}OrderTransaction"] = create
            if outcome is not None:
                kind = "Fill" if outcome["type"] == "ORDER_FILL" else "CreatedCancel"
                body[f"{key}Order{kind}Transaction"] = outcome
        body.update(relatedTransactionIDs=self._ids_since(first), lastTransactionID=self.last_id)
        return 200, body

    def _parse(self, spec: dict[str, Any], *, replacing: SimOrder | None = None) -> SimOrder:
        """The order ``spec`` asks for (``replacing``: the pending order it is to replace)."""
        order_type = spec["type"]
        # The order being replaced is cancelled in the same batch: what it holds is free.
        freed = _client_id(replacing) if replacing else None
        client_ids = {c for c in self.by_client_id if c != freed}
        if order_type in DEPENDENT_TYPES:
            trade = self.trades.get(str(spec.get("tradeID")))
            if trade is not None and trade.current_units == 0:
                trade = None
            taken = (
                any(
                    o.trade_id == trade.id and o.type == order_type and o is not replacing
                    for o in self.pending()
                )
                if trade
                else False
            )
            return parse_dependent(
                spec,
                order_type,
                trade=trade,
                instrument=self.feed.instruments.get(trade.instrument) if trade else None,
                client_ids=client_ids,
                taken=taken,
                now_ns=self.now_ns(),
            )
        return parse_order(
            spec,
            order_type,
            instruments=self.feed.instruments,
            client_ids=client_ids,
            pending=sum(1 for o in self.pending() if o is not replacing),
            now_ns=self.now_ns(),
        )

    def _rejected(
        self,
        spec: dict[str, Any],
        reject: Reject,
        *,
        reason: str,
        replacing: SimOrder | None = None,
    ) -> Reply:
        txn = self._txn(
            f"{spec['type']}_ORDER_REJECT",
            **echo(spec),
            reason=reason,
            rejectReason=reject.reason,
            **({"intendedReplacesOrderID": replacing.id} if replacing else {}),
        )
        return 400, {
            "orderRejectTransaction": txn,
            "relatedTransactionIDs": [txn["id"]],
            "lastTransactionID": self.last_id,
            "errorCode": reject.reason,
            "errorMessage": reject.message,
        }

    def _ids_since(self, first: int) -> list[str]:
        """Ids of the transactions made since there were ``first`` of them."""
        return [t["id"] for t in self.transactions[first:]]

    def pending(self) -> list[SimOrder]:
        """Pending orders, oldest first."""
        return [o for o in self.orders.values() if o.state == "PENDING"]

    def close_position(self, instrument: str, payload: Any) -> Reply:
        """``PUT .../positions/{instrument}/close``: close the long and/or short side at market.

        ``longUnits``/``shortUnits`` are ``"ALL"``, ``"NONE"`` or a number of
        units (v20's default is ``"ALL"``). Under netting only one side is
        ever held: an absent side left at the default is skipped, one asked
        for by name is refused with ``CLOSEOUT_POSITION_DOESNT_EXIST``.
        """
        if instrument not in self.feed.instruments:
            return 404, {"errorMessage": f"The instrument {instrument} is unknown"}
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            return 400, {"errorMessage": "Invalid JSON in the request body"}
        net = self.net(instrument)
        body: dict[str, Any] = {}
        related: list[str] = []
        status = 200
        for side in ("long", "short"):
            asked = payload.get(f"{side}Units")
            held = max(net, Decimal(0)) if side == "long" else max(-net, Decimal(0))
            if asked == "NONE" or (asked is None and not held):
                continue
            spec = {
                "instrument": instrument,
                "units": "ALL" if asked is None else asked,
                "clientExtensions": payload.get(f"{side}ClientExtensions"),
            }
            try:
                order = self._closeout_order(side, spec, held)
            except Reject as reject:
                txn = self._txn(
                    "MARKET_ORDER_REJECT",
                    instrument=instrument,
                    reason="POSITION_CLOSEOUT",
                    rejectReason=reject.reason,
                )
                body[f"{side}OrderRejectTransaction"] = txn
                body.update(errorCode=reject.reason, errorMessage=reject.message)
                related.append(txn["id"])
                status = 400
                continue
            create, outcome = self._enter(order, reason="POSITION_CLOSEOUT")
            body[f"{side}OrderCreateTransaction"] = create
            related.append(create["id"])
            if outcome is not None:
                kind = "Fill" if outcome["type"] == "ORDER_FILL" else "Cancel"
                body[f"{side}Order{kind}Transaction"] = outcome
                related.append(outcome["id"])
        if not body:
            status = 400
            body = {
                "errorCode": "CLOSEOUT_POSITION_DOESNT_EXIST",
                "errorMessage": "The Position requested to be closed out does not exist",
            }
        body.update(relatedTransactionIDs=related, lastTransactionID=self.last_id)
        return status, body

    def _closeout_order(self, side: str, spec: dict[str, Any], held: Decimal) -> SimOrder:
        """The market order closing ``side``; ``Reject`` with v20's reason if it cannot be."""
        if not held:
            raise Reject(
                "CLOSEOUT_POSITION_DOESNT_EXIST",
                "The Position requested to be closed out does not exist",
            )
        asked = str(spec["units"])
        amount = held if asked == "ALL" else parse_units(spec["units"])
        if amount <= 0:
            raise Reject("CLOSEOUT_POSITION_UNITS_INVALID", "Closeout units must be positive")
        if amount > held:
            raise Reject(
                "CLOSEOUT_POSITION_UNITS_EXCEED_POSITION_SIZE",
                f"Cannot close {amount} units of a {held} unit {side} position",
            )
        extensions = spec["clientExtensions"]
        if extensions is not None:
            client_id = extensions.get("id") if isinstance(extensions, dict) else ""
            if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID:
                raise Reject("CLIENT_ORDER_ID_INVALID", "clientExtensions.id is not valid")
            if client_id in self.by_client_id:
                raise Reject(
                    "CLIENT_ORDER_ID_ALREADY_EXISTS",
                    f"An order with client id {client_id} already exists",
                )
        return SimOrder(
            id="",
            type="MARKET",
            instrument=spec["instrument"],
            units=-amount if side == "long" else amount,
            price=None,
            price_bound=None,
            time_in_force="FOK",
            gtd_ns=None,
            position_fill="REDUCE_ONLY",
            trigger_condition="DEFAULT",
            client_extensions=dict(extensions) if extensions else None,
            create_ns=self.now_ns(),
            closeout=(side, asked),
        )

    def _inst(self, order: SimOrder) -> Instrument:
        return self.feed.instruments[order.instrument]

    def _enter(
        self, order: SimOrder, *, reason: str, batch: str | None = None, **extra: Any
    ) -> tuple[Transaction, Transaction | None]:
        """Book a checked order: its create transaction, then its fill or cancel if at once."""
        if order.type == "TRAILING_STOP_LOSS":
            self._trail(order, self.feed.quote(order.instrument), start=True)
        fields = order_fields(order, self._inst(order))
        del fields["type"]  # the transaction's type says which order it creates
        create = self._txn(f"{order.type}_ORDER", batch=batch, **fields, reason=reason, **extra)
        order.id = create["id"]
        self.orders[order.id] = order
        if order.client_extensions and "id" in order.client_extensions:
            self.by_client_id[order.client_extensions["id"]] = order.id
        return create, self._execute_on_create(order, batch=batch or create["id"])

    def _execute_on_create(self, order: SimOrder, *, batch: str) -> Transaction | None:
        """Fill or cancel at once when the order says so; ``None`` if it rests."""
        quote = self.feed.quote(order.instrument)
        if self._can_fill(order, quote):
            return self._fill(order, quote, batch=batch)
        if order.time_in_force in ("FOK", "IOC"):
            return self._cancel(order, "INSUFFICIENT_LIQUIDITY", batch=batch)
        return None

    def _trail(self, order: SimOrder, quote: Quote, *, start: bool = False) -> None:
        """Move a trailing stop's trigger price after the market (never back)."""
        assert order.distance is not None
        closing_buy = order.units > 0  # a short trade's stop buys
        value = quote.ask + order.distance if closing_buy else quote.bid - order.distance
        value = value.quantize(self._inst(order).point)
        current = order.trailing_value
        if start or current is None or (value < current if closing_buy else value > current):
            order.trailing_value = value

    def _can_fill(self, order: SimOrder, quote: Quote) -> bool:
        """Triggered (a market order always is), and the quote has units left for it.

        Orders on a trade close it whole: the simulator does not ration them.
        """
        if order.trade_id is None and quote.liquidity <= 0:
            return False
        return order.type == "MARKET" or self._triggered(order, quote)

    def _triggered(self, order: SimOrder, quote: Quote) -> bool:
        price = order.trailing_value if order.type == "TRAILING_STOP_LOSS" else order.price
        assert price is not None
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
        if order.type in ("STOP", "STOP_LOSS", "TRAILING_STOP_LOSS"):
            return seen >= price if buy else seen <= price
        return seen <= price if buy else seen >= price  # LIMIT, MIT, TAKE_PROFIT

    def cancel_order(self, specifier: str) -> Reply:
        """``PUT .../orders/{specifier}/cancel``."""
        order = self.find(specifier)
        if order is None or order.state != "PENDING":
            return self._cancel_rejected(order, specifier, reason="CLIENT_REQUEST")
        txn = self._cancel(order, "CLIENT_REQUEST")
        return 200, {
            "orderCancelTransaction": txn,
            "relatedTransactionIDs": [txn["id"]],
            "lastTransactionID": self.last_id,
        }

    def _cancel_rejected(self, order: SimOrder | None, specifier: str, *, reason: str) -> Reply:
        """404 ``ORDER_DOESNT_EXIST`` for a cancel (or replace) of an order not pending."""
        txn = self._txn(
            "ORDER_CANCEL_REJECT",
            orderID=order.id if order else specifier,
            **({"clientOrderID": _client_id(order)} if order and _client_id(order) else {}),
            reason=reason,
            rejectReason="ORDER_DOESNT_EXIST",
        )
        return 404, {
            "orderCancelRejectTransaction": txn,
            "relatedTransactionIDs": [txn["id"]],
            "lastTransactionID": self.last_id,
            "errorCode": "ORDER_DOESNT_EXIST",
            "errorMessage": "The order specified does not exist or is not pending",
        }

    def _cancel(
        self,
        order: SimOrder,
        reason: str,
        *,
        batch: str | None = None,
        replaced_by: str | None = None,
    ) -> Transaction:
        txn = self._txn(
            "ORDER_CANCEL",
            batch=batch,
            orderID=order.id,
            **({"clientOrderID": _client_id(order)} if _client_id(order) else {}),
            reason=reason,
            **({"replacedByOrderID": replaced_by} if replaced_by else {}),
        )
        order.state = "CANCELLED"
        order.cancelling_txn = txn["id"]
        order.cancelled_ns = txn["time"]
        order.replaced_by = replaced_by
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
            **order_fields(order, self._inst(order)),
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
        if order.trailing_value is not None:
            wire["trailingStopValue"] = self._inst(order).text(order.trailing_value)
        if order.replaces:
            wire["replacesOrderID"] = order.replaces
        if order.replaced_by:
            wire["replacedByOrderID"] = order.replaced_by
        return wire

    # -- fills --------------------------------------------------------------

    def _fill(self, order: SimOrder, quote: Quote, *, batch: str | None = None) -> Transaction:
        """Fill the order at the touch, or cancel it with the reason it cannot.

        A quote offering fewer units than the order fills what it offers: a
        ``FOK`` order is cancelled instead (``INSUFFICIENT_LIQUIDITY``), an
        ``IOC`` one is done, and a resting one is reissued for the rest (see
        ``_reissue``).
        """
        instrument = self._inst(order)
        if order.trade_id is not None:
            # A dependent order closes what is left of its trade.
            order.units = -self.trades[order.trade_id].current_units
        buy = order.units > 0
        price = quote.ask if buy else quote.bid
        if order.price_bound is not None and (
            (buy and price > order.price_bound) or (not buy and price < order.price_bound)
        ):
            return self._cancel(order, "BOUNDS_VIOLATION", batch=batch)
        loss = on_fill_loss(order, price)
        if loss is not None:
            return self._cancel(order, loss, batch=batch)
        net = self.net(order.instrument)
        if abs(net + order.units) > abs(net):
            rate = self.feed.home_rate(instrument.quote, self.currency)
            extra = (abs(net + order.units) - abs(net)) * price * rate * self.margin_rate
            if self.margin_used() + extra > self.nav():
                return self._cancel(order, "INSUFFICIENT_MARGIN", batch=batch)
        amount = order.units
        if order.trade_id is None and abs(amount) > quote.liquidity:
            if order.time_in_force == "FOK":
                return self._cancel(order, "INSUFFICIENT_LIQUIDITY", batch=batch)
            amount = quote.liquidity if buy else -quote.liquidity
        if order.trade_id is None:
            self.feed.take(order.instrument, abs(amount))
        fill = self._apply_fill(order, instrument, price, quote, amount, batch=batch)
        if amount != order.units and order.time_in_force in ("GTC", "GFD", "GTD"):
            self._reissue(order, order.units - amount, batch=batch or fill["id"])
        return fill

    def _reissue(self, order: SimOrder, rest: Decimal, *, batch: str) -> None:
        """Reissue a partly filled resting order for its remaining units, in the fill's batch.

        v20 reissues such an order (its ``orderReissueTransaction``); where its
        documentation is silent the simulator chooses: the new order is a
        create with reason ``REPLACEMENT`` naming ``replacesOrderID``, with the
        same terms and client extensions (the client id now finds it), and the
        filled order names it in ``replacedByOrderID``.
        """
        reissued = dataclasses.replace(
            order,
            id="",
            units=rest,
            state="PENDING",
            create_ns=self.now_ns(),
            filling_txn=None,
            filled_ns=None,
            trade_opened=None,
            trade_reduced=None,
            trades_closed=[],
            replaces=order.id,
            replaced_by=None,
        )
        order.replaced_by = str(len(self.transactions) + 1)
        self._enter(reissued, reason="REPLACEMENT", batch=batch, replacesOrderID=order.id)

    def _apply_fill(
        self,
        order: SimOrder,
        instrument: Instrument,
        price: Decimal,
        quote: Quote,
        amount: Decimal,
        *,
        batch: str | None,
    ) -> Transaction:
        rate = self.feed.home_rate(instrument.quote, self.currency)
        remaining = amount
        fill_id = str(len(self.transactions) + 1)  # the id the fill transaction will get
        closed: list[dict[str, Any]] = []
        reduced: dict[str, Any] | None = None
        realized = Decimal(0)
        trades = self.open_trades(order.instrument)
        trades.sort(key=lambda t: t.id != order.trade_id)  # a dependent order's own trade first
        for trade in trades:
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
                "price": instrument.text(price),
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
                "price": instrument.text(price),
                "guaranteedExecutionFee": money(Decimal(0)),
                "halfSpreadCost": money(abs(remaining) * (quote.ask - quote.bid) / 2 * rate),
                "initialMarginRequired": money(abs(remaining) * price * rate * self.margin_rate),
            }
        commission = Decimal(money(abs(amount) * self.commission_per_100k / 100_000))
        self.balance += realized - commission
        self.realized_pl += realized
        self.position_pl[order.instrument] = (
            self.position_pl.get(order.instrument, Decimal(0)) + realized
        )
        fields: dict[str, Any] = {
            "orderID": order.id,
            "instrument": order.instrument,
            "units": units(amount),
            "requestedUnits": units(order.units),
            "price": instrument.text(price),
            "fullVWAP": instrument.text(price),
            "fullPrice": self._price_wire(instrument, quote),
            "reason": "MARKET_ORDER_POSITION_CLOSEOUT" if order.closeout else f"{order.type}_ORDER",
            "pl": money(realized),
            "quotePL": f"{(realized / rate) if rate else realized:f}",
            "financing": money(Decimal(0)),
            "baseFinancing": "0",
            "commission": money(commission),
            "guaranteedExecutionFee": money(Decimal(0)),
            "accountBalance": money(self.balance),
            "halfSpreadCost": money(abs(amount) * (quote.ask - quote.bid) / 2 * rate),
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
        batch = batch or txn["id"]
        for trade_id in order.trades_closed:
            for linked in self.pending():
                if linked.trade_id == trade_id:
                    self._cancel(linked, "LINKED_TRADE_CLOSED", batch=batch)
        if opened:
            self._open_on_fill(order, self.trades[opened["tradeID"]], txn, batch=batch)
        return txn

    def _open_on_fill(
        self, order: SimOrder, trade: SimTrade, fill: Transaction, *, batch: str
    ) -> None:
        """Create the take profit / stop loss / trailing stop an entry asked for on its trade."""
        for key, details in order.on_fill.items():
            if details["distance"] is not None and ON_FILL_TYPES[key] == "STOP_LOSS":
                # A stop loss by distance sits that far from the fill, on the losing side.
                offset = details["distance"] if trade.current_units < 0 else -details["distance"]
                details = {**details, "price": trade.price + offset, "distance": None}
            dependent = dependent_order(
                ON_FILL_TYPES[key], details, trade, details["clientExtensions"], self.now_ns()
            )
            dependent.made_by_fill = fill["id"]
            self._enter(dependent, reason="ON_FILL", batch=batch, orderFillTransactionID=fill["id"])

    def _price_wire(self, instrument: Instrument, quote: Quote) -> dict[str, Any]:
        return {
            "type": "PRICE",
            "instrument": instrument.name,
            "time": self.now_ns(),
            "status": "tradeable",
            "tradeable": True,
            "bids": [{"price": instrument.text(quote.bid), "liquidity": int(quote.liquidity)}],
            "asks": [{"price": instrument.text(quote.ask), "liquidity": int(quote.liquidity)}],
            "closeoutBid": instrument.text(quote.bid),
            "closeoutAsk": instrument.text(quote.ask),
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
            if order.type == "TRAILING_STOP_LOSS":
                self._trail(order, self.feed.quote(order.instrument))
            if order.gtd_ns is not None and order.gtd_ns <= now:
                self._cancel(order, "TIME_IN_FORCE_EXPIRED")
            elif self._can_fill(order, self.feed.quote(order.instrument)):
                self._fill(order, self.feed.quote(order.instrument))

    # -- positions, trades, account -------------------------------------------

    def open_trades(self, instrument: str) -> list[SimTrade]:
        return [
            t for t in self.trades.values() if t.instrument == instrument and t.current_units != 0
        ]

    def net(self, instrument: str) -> Decimal:
        return sum((t.current_units for t in self.open_trades(instrument)), Decimal(0))

    def unrealized(self, trade: SimTrade) -> Decimal:
        instrument = self.feed.instruments[trade.instrument]
        quote = self.feed.quote(trade.instrument)
        close = quote.bid if trade.current_units > 0 else quote.ask
        rate = self.feed.home_rate(instrument.quote, self.currency)
        return (close - trade.price) * trade.current_units * rate

    def value(self, instrument: str, amount: Decimal) -> Decimal:
        inst = self.feed.instruments[instrument]
        rate = self.feed.home_rate(inst.quote, self.currency)
        return abs(amount) * self.feed.quote(instrument).mid * rate

    def margin_used(self) -> Decimal:
        return sum(
            (self.value(i, self.net(i)) * self.margin_rate for i in self.traded()), Decimal(0)
        )

    def unrealized_pl(self) -> Decimal:
        return sum(
            (self.unrealized(t) for t in self.trades.values() if t.current_units != 0), Decimal(0)
        )

    def nav(self) -> Decimal:
        return self.balance + self.unrealized_pl()

    def traded(self) -> list[str]:
        return sorted({t.instrument for t in self.trades.values()})


def _client_id(order: SimOrder) -> str | None:
    return (order.client_extensions or {}).get("id")


#: ``PUT .../trades/{tradeID}/orders``: the body's fields and the order type of each.
_TRADE_ORDER_FIELDS = {
    "takeProfit": "TAKE_PROFIT",
    "stopLoss": "STOP_LOSS",
    "trailingStopLoss": "TRAILING_STOP_LOSS",
}


def _order_spec(payload: Any) -> dict[str, Any] | None:
    """The ``order`` object of a request body if it names an order type v20 takes."""
    spec = payload.get("order") if isinstance(payload, dict) else None
    if not isinstance(spec, dict) or spec.get("type") not in (*ORDER_TYPES, *DEPENDENT_TYPES):
        return None
    return spec
