"""Alpaca (US stocks and ETFs): Trading API v2 over HTTP/1.1, fills from ``trade_updates``.

``AlpacaConnector`` keeps one pooled HTTP client per connection
(``brokers.http.client.HttpPool``: keep-alive, every timeout explicit, no redirects)
and one WebSocket for the ``trade_updates`` stream. A stream silent for
``stale_after_s`` (no update, no pong) is lost like a closed one
(``stream``); ``last_message_at`` tells how long it has been quiet.

The stream has no replay: every (re)connect first reads back what it missed
since the last event delivered -- orders changed since then and their
executions, from the FILL activities, with Alpaca's execution ids -- and
delivers it through the update sink before it reports the stream started (or
back), as does a stream update that shows an update went missing (see
``_catch_up``). The fill ledger (``alpaca.ledger``) never lets a fill out
twice. It is shared by every incarnation of the connection, and a fill counts
as delivered only once the sink has returned for it (the broker actor has
applied it): one whose delivery crashed is delivered again by the next
incarnation, never lost. There is no public ``resync`` returning a list: a
caller applying it itself would have it counted as delivered before it did.

Settings, their ``ALPACA_*`` overrides and the paper/live hosts are in
``settings``. Live trading refuses to start unless the broker's config says
``live_trading_confirmed = true``.

Replace (``PATCH``) and Alpaca's order classes (bracket / oco / oto, see
``order_lists``) are native; ``links`` keeps what ties Alpaca's ids to ours
(legs' client order ids, replace links) and the replace outcomes the stream
tells: ``replace`` returns once Alpaca says the replace took effect, and is
refused (``NotReplaceable``) when a fill got there first.

Rate limits: every reply's ``X-RateLimit-*`` word on what is left of the
key's minute goes to the account's budget (``use_budget``), which grants no
more than that. A 429 (or a reply saying no requests are left) closes a gate
until the window resets; requests meanwhile wait if the wait is short
(``rate_limit_max_wait_s``) and fail with ``RateLimited`` otherwise.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import httpx
import msgspec
import structlog
import trio

from ult_actors.brokers.alpaca.errors import (
    error_from_response,
    error_from_transport,
    rate_limit_exhausted,
    retry_after_s,
    venue_window,
)
from ult_actors.brokers.alpaca.fees import FeeJoin
from ult_actors.brokers.alpaca.ledger import Execution, FillLedger
from ult_actors.brokers.alpaca.links import OrderLinks
from ult_actors.brokers.alpaca.mapping import (
    ORDER_ID_RE,
    map_status,
    order_body,
    replace_body,
    to_account,
    to_order,
    to_position,
)
from ult_actors.brokers.alpaca.order_lists import legs_of, list_body, nested_role, nesting_order
from ult_actors.brokers.alpaca.resync import missed_updates
from ult_actors.brokers.alpaca.settings import AlpacaSettings, data_url, rest_url, stream_url
from ult_actors.brokers.alpaca.stream import (
    StreamTimeouts,
    TradeUpdatesSession,
    open_trade_updates,
)
from ult_actors.brokers.alpaca.wire import (
    WireAccount,
    WireCancelResult,
    WireClock,
    WireCloseResult,
    WireError,
    WireFeeActivity,
    WireFillActivity,
    WireLatestQuote,
    WireOrder,
    WirePosition,
    WireQuote,
    WireTradeUpdate,
    ns_to_rfc3339,
    optional_ns,
)
from ult_actors.brokers.base import UpdateSink
from ult_actors.brokers.budget import RateBudget
from ult_actors.brokers.http.client import HttpPool, require_live_confirmed
from ult_actors.brokers.http.errors import unreadable_reply
from ult_actors.errors import (
    BrokerUnavailable,
    ConfigError,
    DuplicateOrder,
    InvalidOrder,
    NotFound,
    NotReplaceable,
    RateLimited,
    UltError,
)
from ult_actors.messages import (
    TERMINAL_STATUSES,
    Account,
    Contingency,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderUpdate,
    Position,
    ReplaceRequest,
)
from ult_actors.order_state import already_final

_PAGE = 500  # Alpaca's maximum page size for GET /v2/orders
_ACTIVITY_PAGE = 100  # and for GET /v2/account/activities
_SWEEP_SLACK_NS = 60 * 1_000_000_000  # allowance for clock skew and late-stamped events
_REPLACEABLE = frozenset({"new", "partially_filled"})  # Alpaca's statuses that take a PATCH
_ORDER_CLASSES = frozenset({"bracket", "oco", "oto"})
_EXECUTIONS = frozenset({"fill", "partial_fill"})  # the trade update events carrying one


class MarketClock(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the US market is open now, and the next open and close (UTC ns)."""

    is_open: bool
    timestamp: int
    next_open: int
    next_close: int


class AlpacaConnector:
    """A connection to one Alpaca account (see the module docstring)."""

    #: Alpaca carries every order list itself.
    native_contingencies: frozenset[Contingency] = frozenset({"bracket", "oco", "oto"})

    def __init__(
        self,
        name: str,
        settings: AlpacaSettings,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        ledger: FillLedger | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._now_ns = now_ns
        self._rng = rng or random.Random()
        self._http = HttpPool(name, settings, transport=transport)
        self._gate = _RateGate(name, settings.rate_limit_max_wait_s)
        #: The account's request budget (``use_budget``), told what each reply says is left.
        self._budget: RateBudget | None = None
        #: Shared by every incarnation of this connection (see ``kind``).
        self._ledger = ledger if ledger is not None else FillLedger(watch_from_ns=now_ns())
        self._fees = FeeJoin()
        #: Fee activities after this time are still to be read.
        self._fees_after_ns = self._ledger.watch_from_ns
        self._links = OrderLinks()
        self._session: TradeUpdatesSession | None = None
        #: Told when trade_updates is lost and when it is back in step (``watch_stream``).
        self._stream_hook: Callable[[str | None], None] = lambda _why: None
        self.log: Any = structlog.get_logger().bind(broker=name)

    # -- connection ---------------------------------------------------------

    async def connect(self) -> None:
        """Check the configuration, open the HTTP pool and verify the keys."""
        s = self.settings
        require_live_confirmed(
            self.name,
            live=not s.paper,
            confirmed=s.live_trading_confirmed,
            switch="ALPACA_PAPER_TRADING=false",
        )
        if not s.api_key or not s.api_secret:
            raise ConfigError(
                f"broker {self.name}: ALPACA_API_KEY and ALPACA_API_SECRET must both be set"
            )
        base = rest_url(s)
        self._http.open(
            base_url=base,
            headers={
                "APCA-API-KEY-ID": s.api_key.reveal(),
                "APCA-API-SECRET-KEY": s.api_secret.reveal(),
            },
        )
        try:
            account = await self._get("/v2/account", WireAccount, what="account")
        except BaseException:
            with trio.CancelScope(shield=True):  # close the pool even when cancelled
                await self.disconnect()
            raise
        if account.trading_blocked or account.account_blocked:
            self.log.warning("alpaca account is blocked from trading", status=account.status)
        self.log.info("alpaca connected", url=base, paper=s.paper)

    async def disconnect(self) -> None:
        """Close the HTTP pool (the stream ends with its task); safe to repeat."""
        await self._http.close()

    # -- orders -------------------------------------------------------------

    async def submit(self, request: OrderRequest) -> Order:
        """``POST /v2/orders``; a lost reply raises ``BrokerUnavailable`` (outcome unknown)."""
        body = order_body(request)
        try:
            response = await self._request("POST", "/v2/orders", what="submit", json=body)
            # An unreadable 2xx is as unknown as a lost one: inside the same handler.
            order = self._order(self._decode(response, WireOrder, what="submit"))
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"{exc.message}; order {request.client_order_id} may have reached Alpaca:"
                " look it up by client order id before sending it again",
                retry_after=exc.retry_after,
                broker=self.name,
            ) from None
        self._ledger.expect(order)
        return order

    async def replace(self, order: Order, change: ReplaceRequest) -> Order:
        """``PATCH /v2/orders/{id}``: the replacement, once Alpaca says the replace took effect.

        The replacement carries ``change.client_order_id``, so a replace whose
        reply was lost is found by it; one sent twice is answered with the
        replacement the first made. ``NotReplaceable`` names Alpaca's state
        when the order cannot be replaced, or when it filled before the
        replace reached the market (Alpaca then rejects the new order).
        """
        self._check_order_id(order.id)
        if order.status in TERMINAL_STATUSES:
            raise _not_replaceable(order, order.status, self.name)
        body = replace_body(order, change)
        coid = body["client_order_id"]
        self._links.remember(order.id, order.client_order_id, order.leg)
        try:
            response = await self._request(
                "PATCH", f"/v2/orders/{order.id}", what="replace", json=body
            )
            wire = self._decode(response, WireOrder, what="replace")
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"{exc.message}; replacement {coid} may have reached Alpaca:"
                " look it up by client order id before sending it again",
                retry_after=exc.retry_after,
                broker=self.name,
            ) from None
        except (DuplicateOrder, InvalidOrder):
            done = await self._replacement(order, coid)
            if done is not None:
                return done  # this replace was applied before: its reply was lost
            await self._refuse_if_not_replaceable(order)
            raise
        self._links.remember(wire.id, coid, order.leg)
        new = self._order(wire)
        self._ledger.expect(new)
        outcome = await self._links.wait_outcome(new.id, self.settings.read_timeout_s)
        if outcome is None:  # the stream is quiet: ask
            new = await self.get_order(new.id)
            outcome = "rejected" if new.status == "rejected" else "replaced"
        if outcome == "rejected":
            await self._refuse_if_not_replaceable(order)
            raise NotReplaceable(
                f"Alpaca rejected replacement {coid} of order {order.id}", broker=self.name
            )
        return new

    async def _replacement(self, order: Order, coid: str) -> Order | None:
        """The replacement ``coid`` of ``order`` if Alpaca has it already."""
        try:
            found = await self.get_order_by_client_id(coid)
        except NotFound:
            return None
        return found if found.replaces == order.client_order_id else None

    async def _refuse_if_not_replaceable(self, order: Order) -> None:
        """``NotReplaceable`` naming Alpaca's state, unless the order could still be replaced."""
        wire = await self._get(f"/v2/orders/{order.id}", WireOrder, what="order lookup")
        if wire.status not in _REPLACEABLE:
            raise _not_replaceable(order, wire.status, self.name) from None

    async def submit_list(self, request: OrderListRequest) -> list[Order]:
        """``POST /v2/orders`` with Alpaca's ``order_class``: every leg, in ``request.legs`` order.

        Alpaca names the exits with client order ids of its own; the legs come
        back (and are reported from then on) under ours. A lost reply raises
        ``BrokerUnavailable``: look the first leg up by client order id.
        """
        body = list_body(request)
        try:
            with self._links.placing_list():
                response = await self._request("POST", "/v2/orders", what="submit list", json=body)
                wire = self._decode(response, WireOrder, what="submit list")
                legs = legs_of(request, wire)
                for (leg_wire, leg), asked in zip(legs, request.legs, strict=True):
                    self._links.remember(
                        leg_wire.id, asked.client_order_id or leg_wire.client_order_id, leg
                    )
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"{exc.message}; order list {request.list_id} may have reached Alpaca: look up"
                f" {request.legs[0].client_order_id} by client order id before sending it again",
                retry_after=exc.retry_after,
                broker=self.name,
            ) from None
        orders = [self._order(leg_wire) for leg_wire, _ in legs]
        for order in orders:
            self._ledger.expect(order)
        return orders

    async def cancel(self, order_id: str) -> Order:
        """``DELETE /v2/orders/{id}``, then the order as it stands.

        Alpaca's 422 for an order that is already final is ``AlreadyFinal``.
        """
        self._check_order_id(order_id)
        try:
            await self._request("DELETE", f"/v2/orders/{order_id}", what="cancel")
        except InvalidOrder:
            order = await self.get_order(order_id)
            if order.status in TERMINAL_STATUSES:
                raise already_final(order) from None
            raise
        return await self.get_order(order_id)

    async def cancel_all(self) -> dict[str, int]:
        """``DELETE /v2/orders``: order id -> HTTP status of its cancel (200 accepted)."""
        response = await self._request("DELETE", "/v2/orders", what="cancel all")
        results = self._decode(response, list[WireCancelResult], what="cancel all")
        return {r.id: r.status for r in results}

    async def close_position(self, position: Position, client_order_id: str) -> Order:
        """``DELETE /v2/positions/{symbol}``: Alpaca's market order liquidating it.

        Alpaca's close takes no client order id: the order comes back under
        the one Alpaca made, and is tracked under it.
        """
        path = f"/v2/positions/{quote(position.symbol, safe='')}"
        response = await self._request("DELETE", path, what="close position")
        order = self._order(self._decode(response, WireOrder, what="close position"))
        self._ledger.expect(order)
        return order

    async def close_all_positions(self) -> list[Order]:
        """``DELETE /v2/positions?cancel_orders=true``: the closing orders Alpaca made.

        A position Alpaca would not close is logged and left out; the caller
        sees it still open and closes it on its own, getting the error.
        """
        response = await self._request(
            "DELETE", "/v2/positions", what="close all positions", params={"cancel_orders": "true"}
        )
        orders = []
        for result in self._decode(response, list[WireCloseResult], what="close all positions"):
            if 200 <= result.status < 300:
                order = self._order(self._decode_raw(result.body, WireOrder))
                self._ledger.expect(order)
                orders.append(order)
            else:
                error = self._decode_raw(result.body, WireError)
                self.log.warning(
                    "alpaca did not close a position",
                    symbol=result.symbol,
                    status=result.status,
                    error=error.message,
                )
        return orders

    async def get_order(self, order_id: str) -> Order:
        """One order by Alpaca's order id."""
        self._check_order_id(order_id)
        wire = await self._get(f"/v2/orders/{order_id}", WireOrder, what="order lookup")
        return self._order(wire)

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        """One order by our client order id (``NotFound`` if it never arrived)."""
        alpaca_id = self._links.alpaca_id(client_order_id)
        if alpaca_id is not None:  # a leg: Alpaca knows it by its own client order id
            return await self.get_order(alpaca_id)
        wire = await self._get(
            "/v2/orders:by_client_order_id",
            WireOrder,
            what="order lookup",
            params={"client_order_id": client_order_id},
        )
        return self._order(wire)

    async def find_leg(self, record: Order) -> Order:
        """A leg of one of our lists whose Alpaca id never reached us (a lost reply, a restart).

        Alpaca knows such a leg only under a client order id of its own, nested
        under the list's first order: that order is looked up by our client
        order id, read with its legs, and the leg in ``record``'s role is the
        one. It comes back, and is reported from then on, under ``record``'s
        client order id. ``NotFound`` when Alpaca has no such leg.
        """
        leg = record.leg
        nesting = nesting_order(leg) if leg is not None else None
        if leg is None or nesting is None:
            return await self.get_order_by_client_id(record.client_order_id)
        found = await self.get_order_by_client_id(nesting)
        wire = await self._get(
            f"/v2/orders/{found.id}", WireOrder, what="order lookup", params={"nested": "true"}
        )
        for child in wire.legs or ():
            if nested_role(leg.contingency, child) == leg.role:
                self._links.remember(child.id, record.client_order_id, leg)
                return self._order(child)
        raise NotFound(
            f"Alpaca's order {nesting} has no {leg.role} leg ({record.client_order_id})",
            broker=self.name,
        )

    async def open_orders(self) -> list[Order]:
        """Every open order, all pages."""
        return [self._order(w) for w in await self._list_orders("open")]

    async def positions(self) -> list[Position]:
        """Every non-zero position."""
        wires = await self._get("/v2/positions", list[WirePosition], what="positions")
        return [to_position(w, self.name) for w in wires if w.qty != 0]

    async def account(self) -> Account:
        """Cash, buying power and equity."""
        return to_account(await self._get("/v2/account", WireAccount, what="account"), self.name)

    async def market_clock(self) -> MarketClock:
        """``GET /v2/clock``: is the market open, and when it next opens and closes."""
        wire = await self._get("/v2/clock", WireClock, what="clock")
        return MarketClock(
            is_open=wire.is_open,
            timestamp=optional_ns(wire.timestamp),
            next_open=optional_ns(wire.next_open),
            next_close=optional_ns(wire.next_close),
        )

    # -- the trade_updates stream -------------------------------------------

    def watch_stream(self, hook: Callable[[str | None], None]) -> None:
        """Tell ``hook`` when ``trade_updates`` is lost and when it is back in step."""
        self._stream_hook = hook

    def use_budget(self, budget: RateBudget) -> None:
        """Charge every request to the account's ``budget`` (``SupportsRequestBudget``).

        Every reply's ``X-RateLimit-*`` headers are passed on to it: Alpaca
        counts the key's requests, whoever sent them (a process killed a
        moment ago, another on the same key), and the budget keeps to what is left.
        """
        budget.listen_to_venue()
        self._budget = self._http.budget = budget

    @property
    def last_message_at(self) -> float | None:
        """``trio.current_time()`` when ``trade_updates`` last sent anything (a frame or a pong).

        ``None`` before the first session listens. It keeps its value while
        the stream reconnects, so ``trio.current_time() - last_message_at``
        is the stream's silence so far.
        """
        return self._session.last_message_at if self._session is not None else None

    async def stream_updates(
        self,
        sink: UpdateSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver order updates until cancelled, reconnecting and sweeping after each loss.

        ``started`` is reported once the first session listens and its sweep
        is done. A first connection that fails, refused credentials, or more
        than ``stream_max_reconnects`` failures in a row end the task.
        """
        failure: Exception | None = None
        delivered = self._fees.noting(sink)
        async with trio.open_nursery() as nursery:
            if self.settings.fee_poll_s:
                nursery.start_soon(self._poll_fees, delivered)
            try:
                await self._stream(delivered, task_status)
            except Exception as exc:
                failure = exc  # raised after the nursery, so callers see it unwrapped
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _stream(self, sink: UpdateSink, task_status: trio.TaskStatus[None]) -> None:
        s = self.settings
        timeouts = StreamTimeouts(
            connect=s.connect_timeout_s,
            handshake=s.read_timeout_s,
            ping_interval=s.stream_ping_interval_s,
            stale_after=s.stale_after_s,
        )
        url = stream_url(s)
        started = False
        failures = 0
        live_since: float | None = None
        while True:
            try:
                async with open_trade_updates(
                    url, s.api_key, s.api_secret, broker=self.name, timeouts=timeouts
                ) as session:
                    self._session = session
                    await self._catch_up(sink)
                    live_since = trio.current_time()
                    self._stream_hook(None)  # back, and what it missed is delivered
                    if not started:
                        started = True
                        task_status.started()
                    elif failures:
                        self.log.info("trade_updates stream back", after_failures=failures)
                    while True:
                        update = await session.next_update()
                        await self._deliver_stream_update(update, sink)
            except (BrokerUnavailable, RateLimited) as exc:
                if live_since is not None and (
                    trio.current_time() - live_since >= s.stream_stable_after_s
                ):
                    failures = 0  # it had been fine for a while: a fresh loss, not flapping
                live_since = None
                if not started or failures >= s.stream_max_reconnects:
                    raise
                self._stream_hook(f"trade_updates lost ({exc.message}); reconnecting")
                failures += 1
                bound = min(
                    s.stream_backoff_cap_s, s.stream_backoff_initial_s * 2 ** (failures - 1)
                )
                delay = self._rng.uniform(bound / 2, bound)
                self.log.warning(
                    "trade_updates stream lost; reconnecting",
                    error=exc.message,
                    attempt=failures,
                    delay_s=round(delay, 3),
                )
                await trio.sleep(delay)

    async def _deliver_stream_update(self, update: WireTradeUpdate, sink: UpdateSink) -> None:
        wire = update.order
        if wire.order_class in _ORDER_CLASSES and not wire.legs:
            await self._links.wait_adopted(wire.id)  # a leg reported before its list's reply
        if wire.replaced_by and update.event == "replaced":
            self._links.hear(wire.replaced_by, "replaced")
        elif wire.replaces and update.event in ("new", "rejected"):
            self._links.hear(wire.id, "replaced" if update.event == "new" else "rejected")
        filled = wire.filled_qty or Decimal(0)
        if update.event not in _EXECUTIONS and self._ledger.repeats(
            wire.id, map_status(wire.status, filled), filled
        ):
            # Not news (the stream's ``new`` of an order whose REST answer said so):
            # dropped before it is mapped; the broker actor would find it changes nothing.
            return
        order = await self._linked(wire)
        ts = optional_ns(update.timestamp) or self._now_ns()
        execution = None
        if update.event in _EXECUTIONS and update.qty and update.price:
            execution = Execution(
                execution_id=update.execution_id or f"{order.id}:{order.filled_qty}",
                qty=update.qty,
                price=update.price,
                ts=ts,
            )
        if self._reveals_gap(order, execution):
            # An update went missing on a live stream: read the executions back now,
            # with their ids, rather than make one fill up for them.
            await self._catch_up(sink)
        changed, fills = self._ledger.settle(order, execution)
        if changed:
            updates = [OrderUpdate(order=order, fill=fill, ts=ts) for fill in fills]
            await self._deliver(updates or [OrderUpdate(order=order, ts=ts)], sink)
        self._ledger.cursor_ns = max(self._ledger.cursor_ns, ts)

    def _reveals_gap(self, order: Order, execution: Execution | None) -> bool:
        """Whether ``order`` has filled more than was delivered plus this ``execution``."""
        if not self._ledger.watching(order):
            return False
        delivered = self._ledger.delivered(order.id)
        before = delivered[0] if delivered is not None else Decimal(0)
        return order.filled_qty > before + (execution.qty if execution is not None else 0)

    async def _catch_up(self, sink: UpdateSink) -> None:
        """Deliver what the stream missed since the last event delivered, in order.

        Reads the FILL activities since then, then the orders: those created
        since then or since the oldest order last seen open, and any order last
        seen open that the list left out. Fills carry Alpaca's execution ids;
        none the stream (or an earlier catch-up) delivered comes out again.
        Orders older than this connection and never seen by it are left to the
        broker actor's reconciliation. The sweep's start moves only once all
        is delivered.
        """
        since = self._ledger.cursor_ns - _SWEEP_SLACK_NS
        orders_since = since
        earliest = self._ledger.earliest_open_ns()
        if earliest is not None:
            orders_since = min(since, earliest - _SWEEP_SLACK_NS)
        activities = await self._fill_activities(since)
        found = await self._list_orders("all", orders_since)
        listed = {w.id for w in found}
        for oid in self._ledger.open_order_ids():
            if oid not in listed:
                try:
                    found.append(
                        await self._get(f"/v2/orders/{oid}", WireOrder, what="order lookup")
                    )
                except NotFound:
                    continue
        orders = [await self._linked(wire) for wire in found]
        watched = [order for order in orders if self._ledger.watching(order)]
        updates = missed_updates(watched, activities, self._ledger)
        if updates:
            self.log.warning("updates the stream missed", count=len(updates))
        await self._deliver(updates, sink)
        for order in watched:
            self._ledger.cursor_ns = max(self._ledger.cursor_ns, order.updated_at)
        self.log.debug("alpaca catch-up done", orders=len(found), updates=len(updates))

    async def _deliver(self, updates: list[OrderUpdate], sink: UpdateSink) -> None:
        """Hand settled ``updates`` to ``sink`` in order; what it did not take is taken back.

        A broker actor crashing while it applies one leaves that one and those
        after it undelivered in the ledger: the next incarnation delivers them.
        """
        for index, update in enumerate(updates):
            try:
                await sink(update)
            except BaseException:
                for undelivered in updates[index:]:
                    self._ledger.take_back(undelivered.order.id, undelivered.fill)
                raise

    def _order(self, wire: WireOrder) -> Order:
        """Our ``Order`` for Alpaca's, under our client order id and links as far as known."""
        order = self._links.ours(to_order(wire, self.name))
        links: dict[str, Any] = {}
        if wire.replaces:
            links["replaces"] = self._links.client_order_id(wire.replaces)
        if wire.replaced_by:
            links["replaced_by"] = self._links.client_order_id(wire.replaced_by)
        return msgspec.structs.replace(order, **links) if links else order

    async def _linked(self, wire: WireOrder) -> Order:
        """``_order``, asking Alpaca for a replace link's client order id not known here."""
        for alpaca_id in (wire.replaces, wire.replaced_by):
            if alpaca_id and self._links.client_order_id(alpaca_id) is None:
                try:
                    other = await self._get(
                        f"/v2/orders/{alpaca_id}", WireOrder, what="order lookup"
                    )
                except NotFound:
                    continue
                self._links.remember(other.id, other.client_order_id)
        return self._order(wire)

    # -- quotes -------------------------------------------------------------

    async def quote(self, symbol: str) -> Decimal | None:
        """The mid of Alpaca's latest quote of ``symbol`` (market data API); None: no
        two-sided quote. Not held back by the trading API's rate limit: its own host."""
        url = f"{data_url(self.settings)}/v2/stocks/{quote(symbol, safe='')}/quotes/latest"
        try:
            response = await self._http.client().request("GET", url)
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, broker=self.name, what="latest quote") from None
        if not response.is_success:
            raise error_from_response(response, broker=self.name, now_ns=self._now_ns())
        latest: WireQuote = self._decode(response, WireLatestQuote, what="latest quote").quote
        if latest.ap <= 0 or latest.bp <= 0:
            return None
        return (latest.ap + latest.bp) / 2

    # -- fees ---------------------------------------------------------------

    async def _poll_fees(self, sink: UpdateSink) -> None:
        """Read the fee activities every ``fee_poll_s``; deliver each joined to its execution."""
        while True:
            await trio.sleep(self.settings.fee_poll_s)
            try:
                activities = await self._fee_activities(self._fees_after_ns - _SWEEP_SLACK_NS)
            except UltError as exc:
                self.log.warning("fee activities not read; next time", error=exc.message)
                continue
            now = self._now_ns()
            for activity in activities:
                update = self._fees.join(activity, now)
                if update is not None:
                    await sink(update)
                elif not self._fees.joined(activity):
                    self.log.info("fee activity of no execution delivered here", id=activity.id)
            self._fees_after_ns = now  # read again from a little before (ids dedupe)

    async def _fee_activities(self, after_ns: int) -> list[WireFeeActivity]:
        """All pages of the FEE and CFEE activities after ``after_ns``, oldest first."""
        return await self._activities(
            "/v2/account/activities",
            list[WireFeeActivity],
            what="fee activities",
            after_ns=after_ns,
            activity_types="FEE,CFEE",
        )

    # -- HTTP ---------------------------------------------------------------

    async def _fill_activities(self, after_ns: int) -> list[WireFillActivity]:
        """All pages of ``GET /v2/account/activities/FILL`` after ``after_ns``, oldest first."""
        return await self._activities(
            "/v2/account/activities/FILL",
            list[WireFillActivity],
            what="fill activities",
            after_ns=after_ns,
        )

    async def _activities(
        self, path: str, into: Any, *, what: str, after_ns: int, **filters: str
    ) -> list[Any]:
        """All pages of the account activities at ``path`` after ``after_ns``, oldest first."""
        out: list[Any] = []
        params = {
            **filters,
            "after": ns_to_rfc3339(after_ns),
            "direction": "asc",
            "page_size": str(_ACTIVITY_PAGE),
        }
        while True:
            page = await self._get(path, into, what=what, params=params)
            out.extend(page)
            if len(page) < _ACTIVITY_PAGE:
                return out
            params["page_token"] = page[-1].id

    async def _list_orders(
        self, status: Literal["open", "all"], after_ns: int | None = None
    ) -> list[WireOrder]:
        """All pages of ``GET /v2/orders``, oldest first."""
        out: list[WireOrder] = []
        after = ns_to_rfc3339(after_ns) if after_ns is not None else None
        while True:
            params = {"status": status, "limit": str(_PAGE), "direction": "asc"}
            if after is not None:
                params["after"] = after
            page = await self._get("/v2/orders", list[WireOrder], what="order list", params=params)
            out.extend(page)
            if len(page) < _PAGE or not page[-1].submitted_at:
                return out
            after = page[-1].submitted_at

    async def _get(
        self, path: str, into: Any, *, what: str, params: dict[str, str] | None = None
    ) -> Any:
        response = await self._request("GET", path, what=what, params=params)
        return self._decode(response, into, what=what)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        client = self._http.client()
        await self._http.charge()
        await self._gate.wait()
        content = msgspec.json.encode(json) if json is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = await client.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, broker=self.name, what=what) from None
        if self._budget is not None and response.status_code < 500:  # Alpaca's own answer
            self._budget.heard(*venue_window(response.headers, self._now_ns()))
        if response.status_code == 429:
            error = error_from_response(response, broker=self.name, now_ns=self._now_ns())
            self._gate.close_for(error.retry_after)
            raise error
        if rate_limit_exhausted(response.headers):
            self._gate.close_for(retry_after_s(response.headers, self._now_ns()))
        if response.is_success:
            return response
        raise error_from_response(response, broker=self.name, now_ns=self._now_ns())

    def _decode(self, response: httpx.Response, into: Any, *, what: str) -> Any:
        try:
            return msgspec.json.decode(response.content, type=into)
        except msgspec.DecodeError as exc:  # also a valid JSON missing fields
            raise unreadable_reply(
                exc, broker=self.name, doing=f"Alpaca {what}", status=response.status_code
            ) from None

    def _decode_raw(self, raw: msgspec.Raw, into: Any) -> Any:
        """One entry of a multi-status reply (its body arrives undecoded)."""
        try:
            return msgspec.json.decode(raw, type=into)
        except msgspec.DecodeError as exc:
            raise unreadable_reply(
                exc, broker=self.name, doing="Alpaca close all positions"
            ) from None

    def _check_order_id(self, order_id: str) -> None:
        if not ORDER_ID_RE.match(order_id):
            # Not an Alpaca order id (perhaps a client order id): never put it in a path.
            raise NotFound(f"no Alpaca order with id {order_id!r}", broker=self.name)


def _not_replaceable(order: Order, status: str, broker: str) -> NotReplaceable:
    return NotReplaceable(
        f"order {order.id} (client order id {order.client_order_id}) is {status};"
        " it cannot be replaced",
        broker=broker,
    )


class _RateGate:
    """Holds requests back while Alpaca's rate-limit window is exhausted."""

    def __init__(self, broker: str, max_wait_s: float) -> None:
        self._broker = broker
        self._max_wait_s = max_wait_s
        self._until = -math.inf

    def close_for(self, seconds: float | None) -> None:
        wait = 1.0 if seconds is None else seconds
        self._until = max(self._until, trio.current_time() + wait)

    async def wait(self) -> None:
        delay = self._until - trio.current_time()
        if delay <= 0:
            return
        if delay > self._max_wait_s:
            raise RateLimited(
                f"Alpaca rate limit reached; retry in {delay:.1f} s",
                retry_after=delay,
                broker=self._broker,
            )
        await trio.sleep(delay)


__all__ = ["AlpacaConnector", "MarketClock"]
