"""OANDA (forex and CFDs): v20 REST over httpx, fills from the transaction stream.

``OandaConnector`` keeps one pooled ``httpx.AsyncClient`` per connection
(``brokers.http.client.HttpPool``: keep-alive, every timeout explicit, no redirects,
no proxies from the environment) for REST and for the transaction stream. Symbols, units, order
types and states are mapped as ``oanda.mapping`` documents; errors as
``oanda.errors`` documents.

Settings, their ``OANDA_*`` overrides and the practice/live hosts are in
``settings``. Live trading refuses
to start unless the broker's config says ``live_trading_confirmed = true``;
like a missing token, that is a ``ConfigError`` on connect, which the broker
actor treats as fatal (no restart loop).

The transaction stream has no replay. A dead one (no transaction and no
heartbeat for ``stale_after_s``, dropped, garbled) makes ``stream_updates``
raise ``BrokerUnavailable``: the actor crashes and its supervisor restarts it.
Every (re)start fetches ``/transactions/sinceid`` from the last transaction
delivered and delivers what it finds through the update sink before it reports
the stream live, so nothing falls in the gap (``oanda.stream`` keeps that
promise). The cursor moves past a transaction only once the sink has returned
for it (the broker actor has applied it): one whose delivery crashed is
delivered again by the next incarnation, never lost. There is no separate
``resync``: a call after the stream started would have moved the cursor before
its caller applied what it returned. A heartbeat naming a transaction the
stream never sent is a gap filled at once, the stream staying up.
``last_message_at`` is when the stream last said anything. The id lives in a
``TransactionCursor`` shared by all incarnations of one connection (see
``kind.connector_factory``); a connector given none starts from the account's
newest transaction at connect. A cursor *ahead* of the account (v20's 416:
the account's history restarted) is realigned to the account's newest
transaction with a warning, and the broker actor's start reconciliation then
settles every journaled order from the broker's record.

Replace and brackets (issue 17): ``replace`` is v20's ``PUT
.../orders/{@clientID}``, a cancel (``CLIENT_REQUEST_REPLACED``) and a new
order (``REPLACEMENT``) in one batch; the stream reports the old order
``replaced`` and the new one when it sees the new order's create. A bracket
is native (``submit_list``): the entry carries its exits as
``takeProfitOnFill``/``stopLossOnFill``, they are ``held`` until v20 creates
them on the trade the fill opens, and the first to fill closes the trade and
cancels the other (``LINKED_TRADE_CLOSED``). OCO and OTO are left to the
service. A resting order filled in part is reissued by v20 for the rest under
a new id and the same client id: it stays one order of ours, its fills added
up along the chain. Reading v20's records back as ours (those chains, the
exits an entry holds) and what the connection remembers of orders is
``oanda.records``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec
import structlog
import trio

from ult_actors.brokers.base import UpdateSink
from ult_actors.brokers.budget import RateBudget
from ult_actors.brokers.http.client import HttpPool, http_timeouts, require_live_confirmed
from ult_actors.brokers.http.errors import unreadable_reply
from ult_actors.brokers.http.pacing import ConnectionPacer
from ult_actors.brokers.oanda.errors import error_from_response, error_from_transport
from ult_actors.brokers.oanda.mapping import (
    CREATE_TYPES,
    EXIT_CREATE_TYPES,
    EXIT_ORDER_TYPES,
    SYNTHETIC_CLIENT_ID_PREFIX,
    account_from_summary,
    bracket_body,
    exit_body,
    exit_order,
    order_body,
    order_from_create,
    order_from_wire,
    position_from_wire,
    replacement_request,
)
from ult_actors.brokers.oanda.records import OrderRecords, exit_ended
from ult_actors.brokers.oanda.settings import (
    OandaSettings,
    oanda_settings_from_env,
    rest_url,
    stream_url,
)
from ult_actors.brokers.oanda.stream import TransactionCursor, TransactionFeed
from ult_actors.brokers.oanda.wire import (
    AccountsReply,
    CancelReply,
    ClosePositionReply,
    CreateReply,
    OrderReply,
    PositionsReply,
    PricingReply,
    ReplaceReply,
    SummaryReply,
    TransactionsReply,
    WireTransaction,
    time_ns,
)
from ult_actors.errors import (
    BrokerUnavailable,
    ConfigError,
    InvalidOrder,
    NotFound,
    NotReplaceable,
)
from ult_actors.messages import (
    TERMINAL_STATUSES,
    Account,
    Contingency,
    Leg,
    LegRole,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderUpdate,
    Position,
    ReplaceRequest,
)
from ult_actors.order_state import already_final, order_from_request

_T = TypeVar("_T")

class OandaConnector:
    """A connection to one OANDA v20 account (see the module docstring)."""

    def __init__(
        self,
        name: str,
        settings: OandaSettings,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        cursor: TransactionCursor | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        pacer: ConnectionPacer | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._now_ns = now_ns
        self._cursor = cursor if cursor is not None else TransactionCursor()
        # One pacer per account, shared by its incarnations (``kind.connector_factory``).
        pacer = pacer or ConnectionPacer(settings.new_connections_per_s)
        self._http = HttpPool(name, settings, transport=transport, pacer=pacer)
        self._account_id = settings.account_id
        self._rest = rest_url(settings)
        self._stream = stream_url(settings)
        #: Our orders as v20 records them, and what this connection remembers of them.
        self._records = OrderRecords(name, self._account_get, now_ns=now_ns)
        self.log: Any = structlog.get_logger().bind(broker=name)
        self._feed = TransactionFeed(
            self._cursor,
            self._fetch_since,
            broker=name,
            stale_after_s=settings.stale_after_s,
            log=self.log,
        )
        #: Why this connection found the account's history restarted (``None``: it did not);
        #: the broker actor then resets the books to the account's positions.
        self.account_reset: str | None = None

    def __repr__(self) -> str:
        return f"OandaConnector({self.name!r}, account={self._account_id!r}, url={self._rest!r})"

    # -- connection ---------------------------------------------------------

    async def connect(self) -> None:
        """Check the configuration, open the HTTP pool and verify the token and account."""
        s = self.settings
        require_live_confirmed(
            self.name,
            live=s.environment == "live",
            confirmed=s.live_trading_confirmed,
            switch="OANDA_ENVIRONMENT=live",
        )
        if not s.token:
            raise ConfigError(f"broker {self.name}: OANDA_API_TOKEN is not set")
        self._http.open(
            headers={
                "Authorization": f"Bearer {s.token.reveal()}",
                "Accept-Datetime-Format": "UNIX",
            }
        )
        try:
            if not self._account_id:
                self._account_id = await self._only_account()
            try:
                summary = await self._get(self._path("/summary"), SummaryReply, what="account")
            except NotFound:
                raise ConfigError(
                    f"broker {self.name}: OANDA has no account {self._account_id!r} for this"
                    " token (check OANDA_ACCOUNT_ID and OANDA_ENVIRONMENT)"
                ) from None
        except BaseException:
            await self.disconnect()
            raise
        self._align_cursor(int(summary.lastTransactionID))
        self.log.info(
            "oanda connected",
            url=self._rest,
            environment=s.environment,
            account=self._account_id,
            last_transaction=self._cursor.last_id,
        )

    def _align_cursor(self, newest: int) -> None:
        """Start from the account's newest transaction if we have no cursor or ours is ahead.

        A cursor ahead of the account (v20 answers 416 to it) means the
        account's history restarted (a reset practice account, a restarted
        simulator): our cursor is wrong, not the broker. Nothing after the
        new position is missed, and the broker actor reconciles every
        journaled order in full when the stream is live.
        """
        last = self._cursor.last_id
        if last is not None and last > newest:
            self.account_reset = (
                f"OANDA transaction ids went back (ours {last}, the account's newest {newest})"
            )
            self.log.warning(
                "oanda transaction cursor ahead of the account; resuming from the account's"
                " newest transaction and reconciling orders in full",
                cursor=last,
                account_last_transaction=newest,
            )
        if last is None or last > newest:
            self._cursor.last_id = newest

    async def _only_account(self) -> str:
        reply = await self._get("/v3/accounts", AccountsReply, what="account list")
        if len(reply.accounts) != 1:
            raise ConfigError(
                f"broker {self.name}: the token has {len(reply.accounts)} accounts;"
                " set OANDA_ACCOUNT_ID to the one to trade"
            )
        return reply.accounts[0].id

    async def disconnect(self) -> None:
        """Close the HTTP pool (the stream ends with its task); safe to repeat."""
        await self._http.close()

    # -- orders -------------------------------------------------------------

    async def submit(self, request: OrderRequest) -> Order:
        """``POST .../orders``; a lost reply raises ``BrokerUnavailable`` (outcome unknown)."""
        return await self._submit_body(request, order_body(request))

    async def _submit_body(self, request: OrderRequest, body: dict[str, Any]) -> Order:
        try:
            content = await self._request(
                "POST", self._path("/orders"), what="submit", json=body, request=request
            )
            # An unreadable 2xx is as unknown as a lost one: inside the same handler.
            reply = self._decode(content, CreateReply, "submit")
            create = reply.orderCreateTransaction
            if create is None or create.id is None:
                missing = ValueError("no orderCreateTransaction")
                raise unreadable_reply(missing, broker=self.name, doing="OANDA submit")
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"{exc.message}; order {request.client_order_id} may have reached OANDA:"
                " look it up by client order id before sending it again",
                retry_after=exc.retry_after,
                broker=self.name,
            ) from None
        return self._placed(
            request, create, reply.orderFillTransaction, reply.orderCancelTransaction
        )

    def _placed(
        self,
        request: OrderRequest,
        create: WireTransaction,
        fill: WireTransaction | None,
        cancel: WireTransaction | None,
        *,
        replaces: str | None = None,
        leg: Leg | None = None,
    ) -> Order:
        """The order v20 created for ``request``, after its immediate fill or cancel if any."""
        assert create.id is not None
        order = order_from_request(
            request,
            broker=self.name,
            order_id=create.id,
            status="accepted",
            now_ns=time_ns(create.time, self._now_ns()),
        )
        order = msgspec.structs.replace(order, replaces=replaces, leg=leg)
        if fill is not None:
            order = self._records.after_fill(order, fill)[0]
        if cancel is not None:
            order = self._records.after_cancel(order, cancel)
        self._records.orders.put(order.id, order)
        return order

    async def cancel(self, order_id: str) -> Order:
        """``PUT .../orders/{id or @clientID}/cancel``, then the order as it stands.

        ``order_id`` is v20's numeric id or, otherwise, our client order id.
        v20's 404 for an order that is already final is ``AlreadyFinal``. A
        bracket's exit still held on its entry is no order at v20 yet: it goes
        with its entry (cancel or replace that), so its cancel is refused.
        """
        specifier = self._specifier(order_id)
        try:
            content = await self._request(
                "PUT", self._path(f"/orders/{specifier}/cancel"), what="cancel"
            )
        except NotFound:
            try:
                order = await self._records.lookup(specifier)
            except NotFound:
                exit_ = await self._records.unmade_exit(order_id) if specifier[0] == "@" else None
                if exit_ is None:
                    raise  # it never existed
                order = exit_
                if order.status == "held":
                    raise InvalidOrder(
                        f"order {order_id} is the exit of a bracket entry not filled yet;"
                        " OANDA makes it when the entry fills: cancel or replace the entry",
                        field="order_id",
                        broker=self.name,
                    ) from None
            if order.status in TERMINAL_STATUSES:
                raise already_final(order) from None
            raise
        reply = self._decode(content, CancelReply, "cancel")
        cancel = reply.orderCancelTransaction
        if cancel is not None and cancel.orderID is not None:
            known = self._records.orders.get(cancel.orderID)
            if known is not None:
                order = self._records.after_cancel(known, cancel)
                self._records.orders.put(order.id, order)
                return order
            self._records.transactions.put(cancel.id or "", cancel)
        return await self._records.lookup(specifier)

    async def replace(self, order: Order, change: ReplaceRequest) -> Order:
        """``PUT .../orders/{specifier}``: v20 cancels ``order`` and creates the replacement.

        The replacement asks for what is left to fill and carries
        ``change.client_order_id`` in its client extensions, so a replace whose
        reply was lost is found by that id. An order v20 no longer has pending
        (filled, canceled: a race lost to a fill), or a bracket's exit still
        held on its entry, is ``NotReplaceable``. A bracket's entry keeps its
        exits (they go with the replacement); an exit working on its trade is
        replaced by another on the same trade, for the whole trade.
        """
        if order.status in TERMINAL_STATUSES or order.status == "held":
            raise NotReplaceable(_not_replaceable(order), broker=self.name)
        request = replacement_request(order, change)
        specifier = self._specifier_of(order)
        path = self._path(f"/orders/{quote(specifier, safe='')}")
        body = order_body(request)
        if order.leg is not None:
            body = await self._list_leg_body(path, body, order, change)
        try:
            content = await self._request("PUT", path, what="replace", json=body)
            reply = self._decode(content, ReplaceReply, "replace")
            create = reply.orderCreateTransaction
            if create is None or create.id is None:
                missing = ValueError("no orderCreateTransaction")
                raise unreadable_reply(missing, broker=self.name, doing="OANDA replace")
        except NotFound:
            current = await self._records.lookup(specifier)  # NotFound again if it never existed
            raise NotReplaceable(_not_replaceable(current), broker=self.name) from None
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"{exc.message}; the replace of {order.client_order_id} may have reached OANDA:"
                f" look {change.client_order_id} up by client order id before sending it again",
                retry_after=exc.retry_after,
                broker=self.name,
            ) from None
        new = self._placed(
            request,
            create,
            reply.orderFillTransaction,
            reply.replacingOrderCancelTransaction,
            replaces=order.client_order_id,
            leg=order.leg,
        )
        held = self._records.held.pop(order.id)
        if held is not None:
            self._records.held.put(new.id, held)
        old = self._records.orders.get(order.id) or order
        self._records.orders.put(order.id, self._replaced(old, new, create))
        return new

    async def _list_leg_body(
        self, path: str, body: dict[str, Any], order: Order, change: ReplaceRequest
    ) -> dict[str, Any]:
        """The replacement of a bracket's leg as v20 needs it (it replaces with what is sent).

        An entry sends its exits again; an exit is a take profit or stop loss
        on the same trade, which closes the whole trade: its qty cannot change.
        """
        wire = (await self._get(path, OrderReply, what="replace")).order
        if wire.type in EXIT_ORDER_TYPES:
            if change.qty is not None and change.qty != order.qty:
                raise InvalidOrder(
                    f"order {order.client_order_id} closes its whole OANDA trade:"
                    " its qty cannot change",
                    field="qty",
                )
            return exit_body(wire.type, wire.tradeID or "", body["order"])
        for key, details in (
            ("takeProfitOnFill", wire.takeProfitOnFill),
            ("stopLossOnFill", wire.stopLossOnFill),
        ):
            if details is not None and details.price is not None:
                body["order"][key] = {"price": f"{details.price:f}"}
                if details.clientExtensions is not None and details.clientExtensions.id:
                    body["order"][key]["clientExtensions"] = {"id": details.clientExtensions.id}
        return body

    @staticmethod
    def _replaced(old: Order, new: Order, create: WireTransaction) -> Order:
        return msgspec.structs.replace(
            old,
            status="replaced",
            replaced_by=new.client_order_id,
            updated_at=max(old.updated_at, time_ns(create.time)),
        )

    #: Order lists v20 carries itself: an entry with its take profit and stop loss.
    native_contingencies: frozenset[Contingency] = frozenset({"bracket"})

    async def submit_list(self, request: OrderListRequest) -> list[Order]:
        """A bracket: the entry with ``takeProfitOnFill`` and ``stopLossOnFill``.

        The exits are ``held`` until the entry fills (v20 creates them then,
        on the trade it opens, with their client ids); canceling the entry
        cancels them. Other contingencies are emulated by the service.
        """
        if request.contingency != "bracket" or len(request.legs) != 3:
            raise InvalidOrder(
                f"OANDA carries a bracket (entry, take profit, stop loss), not {request.contingency}",
                field="contingency",
            )
        list_id = request.list_id or request.legs[0].client_order_id or ""
        entry = await self._submit_body(request.legs[0], bracket_body(request))
        entry = msgspec.structs.replace(
            entry, leg=Leg(list_id=list_id, contingency="bracket", role="entry")
        )
        self._records.orders.put(entry.id, entry)
        exits = []
        roles: tuple[LegRole, ...] = ("take_profit", "stop_loss")
        for leg_request, role in zip(request.legs[1:], roles, strict=True):
            leg = Leg(
                list_id=list_id, contingency="bracket", role=role, parent_id=entry.client_order_id
            )
            exit_ = order_from_request(
                leg_request, broker=self.name, order_id="", status="held", now_ns=entry.created_at
            )
            exits.append(msgspec.structs.replace(exit_, leg=leg))
        if entry.status in ("accepted", "partially_filled"):
            self._records.held.put(entry.id, exits)
            return [entry, *exits]
        if entry.status != "filled":  # canceled at once: its exits will never be made
            return [entry, *(exit_ended(e, entry) for e in exits)]
        made = []
        for exit_ in exits:
            try:
                found = await self.get_order_by_client_id(exit_.client_order_id)
                made.append(msgspec.structs.replace(found, leg=exit_.leg))
            except NotFound:  # the fill opened no trade (it reduced one): v20 made no exits
                made.append(exit_ended(exit_, entry))
        return [entry, *made]

    async def get_order(self, order_id: str) -> Order:
        """One order by v20's numeric order id."""
        if not order_id.isdigit():
            raise NotFound(
                f"OANDA order ids are numbers; {order_id!r} is not one", broker=self.name
            )
        return await self._records.lookup(order_id)

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        """One order by our client order id (``NotFound`` if it never arrived).

        An order placed without a client id (on OANDA's own platform, then
        adopted) goes by ``oanda-<v20 id>`` (``oanda.mapping``): it is found
        by that id.
        """
        try:
            return await self._records.lookup("@" + client_order_id)
        except NotFound:
            made_up = client_order_id.removeprefix(SYNTHETIC_CLIENT_ID_PREFIX)
            if made_up == client_order_id or not made_up.isdigit():
                exit_ = await self._records.unmade_exit(client_order_id)
                if exit_ is None:
                    raise
                return exit_
            order = await self._records.lookup(made_up)
            if order.client_order_id != client_order_id:
                raise  # that order has a client id of its own: not the one asked for
            return order

    async def open_orders(self) -> list[Order]:
        """Every pending order of ours.

        Take profits and stop losses without a client id (placed on OANDA's
        own platform) and trailing stops are not ours. The exits a bracket's
        entry still holds are not orders at v20 yet (nothing to cancel on
        their own): ``get_order_by_client_id`` finds them, ``held``.
        """
        pending = await self._records.pending()
        orders = []
        for wire in pending:
            if wire.type in EXIT_ORDER_TYPES:
                order = await self._records.before_own(wire)
            else:
                order = self._records.known_fields(order_from_wire(wire, self.name))
            if order is not None:
                orders.append(order)
        return orders

    async def positions(self) -> list[Position]:
        """Every open position, long and short sides netted."""
        reply = await self._get(self._path("/openPositions"), PositionsReply, what="positions")
        return [p for w in reply.positions if (p := position_from_wire(w, self.name)) is not None]

    async def quote(self, symbol: str) -> Decimal | None:
        """The mid of OANDA's best bid and ask for ``symbol`` now (``GET .../pricing``)."""
        reply = await self._get(
            self._path("/pricing"), PricingReply, what="pricing", params={"instruments": symbol}
        )
        for price in reply.prices:
            if price.instrument == symbol and price.bids and price.asks:
                return (price.bids[0].price + price.asks[0].price) / 2
        return None

    async def account(self) -> Account:
        """Balance, NAV and the buying power of the free margin."""
        reply = await self._get(self._path("/summary"), SummaryReply, what="account")
        return account_from_summary(reply.account, self.name)

    async def close_position(self, position: Position, client_order_id: str) -> Order:
        """``PUT .../positions/{instrument}/close``: v20's closeout market order of its side.

        The closing order carries ``client_order_id`` (its client extensions),
        so it is found by it like any order the gateway places.
        """
        side, other = ("long", "short") if position.qty > 0 else ("short", "long")
        body = {
            f"{side}Units": "ALL",
            f"{other}Units": "NONE",
            f"{side}ClientExtensions": {"id": client_order_id},
        }
        path = self._path(f"/positions/{quote(position.symbol, safe='')}/close")
        content = await self._request("PUT", path, what="close position", json=body)
        reply = self._decode(content, ClosePositionReply, "close position")
        create = getattr(reply, f"{side}OrderCreateTransaction")
        order = order_from_create(create, self.name) if create is not None else None
        if order is None:
            missing = ValueError(f"no {side}OrderCreateTransaction")
            raise unreadable_reply(missing, broker=self.name, doing="OANDA close position")
        fill = getattr(reply, f"{side}OrderFillTransaction")
        if fill is not None:
            order = self._records.after_fill(order, fill)[0]
        cancel = getattr(reply, f"{side}OrderCancelTransaction")
        if cancel is not None:
            order = self._records.after_cancel(order, cancel)
        self._records.orders.put(order.id, order)
        return order

    async def close_all_positions(self) -> list[Order] | None:
        """v20 closes one instrument at a time: ``None`` (each position is closed in turn)."""
        return None

    @staticmethod
    def _specifier(order_id: str) -> str:
        return order_id if order_id.isdigit() else "@" + order_id

    @staticmethod
    def _specifier_of(order: Order) -> str:
        # The client id follows our order when v20 reissues its rest under a new id.
        coid = order.client_order_id
        if order.id and coid == f"{SYNTHETIC_CLIENT_ID_PREFIX}{order.id}":
            return order.id  # placed without a client id
        return "@" + coid

    # -- the transaction stream ---------------------------------------------

    async def stream_updates(
        self,
        sink: UpdateSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver order updates until cancelled; raises ``BrokerUnavailable`` when the stream dies.

        The stream is opened first, then the transactions since the cursor
        are fetched and delivered, then ``started`` is reported: whatever
        happens after the cursor arrives either in that fetch or on the
        stream (duplicates are skipped by id).
        """
        client = self._http.client()
        url = f"{self._stream}{self._path('/transactions/stream')}"
        s = self.settings
        # No read timeout: silence is judged by the heartbeat watchdog below.
        timeout = http_timeouts(s, streaming=True)
        try:
            async with client.stream("GET", url, timeout=timeout) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise error_from_response(response, broker=self.name, what="transaction stream")
                deliver = partial(self._deliver, sink=sink)
                self._feed.opened()
                await self._feed.backfill(deliver)
                task_status.started()
                await self._feed.read(response.aiter_lines(), deliver)
        except (httpx.HTTPError, BrokerUnavailable) as exc:
            if not self._http.is_open:
                return  # we hung up ourselves (disconnect): not a lost connection
            if isinstance(exc, BrokerUnavailable):
                raise
            raise error_from_transport(exc, broker=self.name, what="transaction stream") from None
        if self._http.is_open:
            raise BrokerUnavailable("OANDA closed the transaction stream", broker=self.name)

    def use_budget(self, budget: RateBudget) -> None:
        """Charge every request to the account's ``budget`` (``SupportsRequestBudget``)."""
        self._http.budget = budget

    @property
    def last_message_at(self) -> float | None:
        """trio's clock (``trio.current_time()``) when the transaction stream last sent a line.

        A heartbeat counts; so does the stream's opening. ``None`` before the
        stream first opened. Health shows ``trio.current_time()`` minus this.
        """
        return self._feed.last_message_at

    async def _fetch_since(self, since: int) -> TransactionsReply:
        what = "transaction backfill"
        params = {"id": str(since)}
        response = await self._send("GET", self._path("/transactions/sinceid"), what, params=params)
        if response.status_code == 416:
            # Our cursor is past the account's newest transaction (its history restarted
            # since we connected): realign to the account and deliver nothing.
            summary = await self._get(self._path("/summary"), SummaryReply, what="account")
            self._align_cursor(int(summary.lastTransactionID))
            return TransactionsReply(transactions=[], lastTransactionID=summary.lastTransactionID)
        if response.status_code != 200:
            raise error_from_response(response, broker=self.name, what=what)
        return self._decode(response.content, TransactionsReply, what)

    async def _deliver(self, txn: WireTransaction, *, sink: UpdateSink) -> None:
        """Turn one transaction into order updates, if it is about our orders."""
        updates: list[OrderUpdate] = []
        if txn.type in CREATE_TYPES or txn.type in EXIT_CREATE_TYPES:
            updates = await self._on_create(txn)
        elif txn.type == "ORDER_FILL" and txn.orderID:
            held = self._records.held.pop(txn.orderID) or []  # v20 creates the exits next ...
            base = await self._records.order_for(txn.orderID)
            if base is not None:
                order, update = self._records.after_fill(base, txn)
                self._records.orders.put(order.id, order)
                updates = [update]
                if txn.tradeOpened is None:  # ... unless the fill only reduced a trade
                    gone = [exit_ended(e, order) for e in held]
                    updates += [OrderUpdate(order=o, ts=o.updated_at) for o in gone]
        elif (
            txn.type == "ORDER_CANCEL"
            and txn.orderID
            # A cancel to replace is settled by the replacement's create, next in its batch.
            and txn.reason != "CLIENT_REQUEST_REPLACED"
        ):
            updates = await self._on_cancel(txn)
        for update in updates:
            await sink(update)

    async def _on_create(self, txn: WireTransaction) -> list[OrderUpdate]:
        if txn.type in EXIT_CREATE_TYPES:
            trade = await self._records.trade(txn.tradeID)
            created = exit_order(txn, trade, self.name, ts=time_ns(txn.time)) if trade else None
        else:
            created = order_from_create(txn, self.name)
        if created is None:
            return []
        # Report the order as this transaction left it (accepted), even when the submit
        # reply already told us more: the fill comes with its own transaction.
        order = self._records.known_fields(created)
        assert order is not None
        ts = order.created_at
        earlier = None
        if txn.reason == "REPLACEMENT" and txn.replacesOrderID:
            earlier = await self._records.order_for(txn.replacesOrderID)
        if earlier is not None and earlier.client_order_id == order.client_order_id:
            # v20 reissued the rest of our partly filled order: it goes on under this id.
            order = msgspec.structs.replace(earlier, id=order.id, updated_at=ts)
            self._records.orders.put(order.id, order)
            return [OrderUpdate(order=order, ts=ts)]
        if order.id not in self._records.orders:
            self._records.orders.put(order.id, order)
        if earlier is None:
            return [OrderUpdate(order=order, ts=ts)]
        order = msgspec.structs.replace(order, replaces=earlier.client_order_id)
        held = self._records.held.pop(earlier.id)
        if held is not None:
            self._records.held.put(order.id, held)
        gone = self._replaced(earlier, order, txn)
        self._records.orders.put(earlier.id, gone)
        return [OrderUpdate(order=gone, ts=ts), OrderUpdate(order=order, ts=ts)]

    async def _on_cancel(self, txn: WireTransaction) -> list[OrderUpdate]:
        assert txn.orderID is not None
        base = await self._records.order_for(txn.orderID)
        if base is None:
            return []
        order = self._records.after_cancel(base, txn)
        self._records.orders.put(order.id, order)
        updates = [OrderUpdate(order=order, ts=order.updated_at)]
        # The exits of a bracket whose entry will never fill go with it.
        for exit_ in self._records.held.pop(txn.orderID) or []:
            gone = exit_ended(exit_, order)
            updates.append(OrderUpdate(order=gone, ts=order.updated_at))
        return updates

    # -- HTTP -----------------------------------------------------------------

    def _path(self, tail: str) -> str:
        return f"/v3/accounts/{quote(self._account_id, safe='')}{tail}"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        request: OrderRequest | None = None,
    ) -> bytes:
        response = await self._send(method, path, what, json=json, params=params)
        if response.status_code in (200, 201):
            return response.content
        raise error_from_response(response, broker=self.name, what=what, request=request)

    async def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One REST request; a transport failure is ``BrokerUnavailable``, any status returns."""
        client = self._http.client()
        await self._http.charge()
        try:
            return await client.request(method, self._rest + path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, broker=self.name, what=what) from None

    async def _account_get(
        self, tail: str, type_: type[_T], *, what: str, params: dict[str, str] | None = None
    ) -> _T:
        return await self._get(self._path(tail), type_, what=what, params=params)

    async def _get(
        self, path: str, type_: type[_T], *, what: str, params: dict[str, str] | None = None
    ) -> _T:
        return self._decode(await self._request("GET", path, what=what, params=params), type_, what)

    def _decode(self, content: bytes, type_: type[_T], what: str) -> _T:
        try:
            return msgspec.json.decode(content, type=type_)
        except msgspec.DecodeError as exc:  # also a valid JSON missing fields
            raise unreadable_reply(exc, broker=self.name, doing=f"OANDA {what}") from None


def _not_replaceable(order: Order) -> str:
    return (
        f"order {order.id} (client order id {order.client_order_id}) is {order.status};"
        " it cannot be replaced"
    )


__all__ = [
    "OandaConnector",
    "OandaSettings",
    "TransactionCursor",
    "oanda_settings_from_env",
    "rest_url",
    "stream_url",
]
