"""``AsyncClient``: the service over one connection, from trio or asyncio (via anyio).

Any number of tasks may call it at once: each request gets an id and its
caller sleeps until the reply with that id arrives, in whatever order the
service answers (``_connection.Connection``: a lone request costs its caller
alone; many in flight share one reader and one writer task).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import anyio
import anyio.abc

from ult_actors.client import _event_stream
from ult_actors.client._call import Call
from ult_actors.client._connection import Connection
from ult_actors.client._errors import ConnectionLost, ServiceUnreachable
from ult_actors.client._remote import remote_transport
from ult_actors.client._requests import (
    UNSET,
    Number,
    Requests,
    Unset,
    bracket_request,
    no_reply,
    oco_request,
    order_request,
    oto_request,
    replace_request,
    report_query,
    submit_timeout,
)
from ult_actors.errors import Internal
from ult_actors.ipc.paths import resolve_socket
from ult_actors.messages import (
    Account,
    CostReport,
    Event,
    EventTopic,
    HealthSnapshot,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderType,
    Position,
    ReportGrouping,
    Side,
    TimeInForce,
    TradingState,
)

T = TypeVar("T")


class AsyncClient:
    """An async connection to the service; use as ``async with AsyncClient() as c``.

    ``socket`` defaults as for the server (``$ULT_SOCKET``, the systemd
    runtime directory, ``$XDG_RUNTIME_DIR/ult``, ``/tmp/ult-$UID``).
    ``timeout`` bounds each request (``None``: wait as long as it takes);
    submits with ``wait=True`` are not bounded unless given their own.

    With ``url="nats://HOST:PORT"`` (or ``tls://``) the service is reached over
    NATS instead, on cluster ``cluster``'s subjects, with the same methods,
    replies and errors (``creds``: a NATS creds file; ``tls_ca``, ``tls_cert``,
    ``tls_key``: PEM files; a user and password may be in the URL).
    """

    def __init__(
        self,
        socket: str | Path | None = None,
        *,
        url: str | None = None,
        cluster: str = "default",
        creds: str | Path | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        timeout: float | None = 60.0,
        event_buffer: int = 10_000,
    ) -> None:
        self._remote = remote_transport(
            url, cluster, creds, tls_ca, tls_cert, tls_key, event_buffer=event_buffer
        )
        self.socket_path = resolve_socket(str(socket) if socket else None).path
        #: Where the service is: the socket path, or the NATS URL.
        self.address = self._remote.address if self._remote else str(self.socket_path)
        self.timeout = timeout
        self._event_buffer = event_buffer
        self._requests = Requests()
        self._stack: AsyncExitStack | None = None
        self._connection: Connection | None = None
        self._subscribed = False

    async def __aenter__(self) -> AsyncClient:
        if self._remote is not None:
            await self._remote.aopen()
            self._stack = AsyncExitStack()
            self._stack.push_async_callback(self._remote.aclose)
            return self
        try:
            stream = await anyio.connect_unix(self.socket_path)
        except OSError as exc:
            raise ServiceUnreachable(self.socket_path, exc.strerror or str(exc)) from None
        connection = Connection(stream, self.socket_path, event_buffer=self._event_buffer)
        stack = AsyncExitStack()
        await stack.enter_async_context(stream)
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)  # runs before the group waits for its tasks
        tg.start_soon(connection.run)
        self._connection = connection
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; requests still waiting fail with ``ConnectionLost``."""
        stack, self._stack = self._stack, None
        if stack is not None and self._remote is not None:
            await stack.aclose()
        elif stack is not None:
            assert self._connection is not None
            self._connection.close()
            await stack.aclose()

    @property
    def unmatched_replies(self) -> int:
        """Replies whose id matched no waiting request: 0 unless requests timed out
        here before the service answered them (the service answers each once)."""
        return self._connection.unmatched_replies if self._connection else 0

    # -- requests ---------------------------------------------------------------

    async def submit(
        self,
        symbol: str,
        side: Side,
        qty: Number,
        *,
        type: OrderType = "market",
        limit_price: Number | None = None,
        stop_price: Number | None = None,
        time_in_force: TimeInForce = "day",
        extended_hours: bool = False,
        broker: str | None = None,
        client_order_id: str | None = None,
        wait: bool = False,
        timeout: float | Unset | None = UNSET,
    ) -> Order:
        """Place an order; with ``wait=True`` the reply comes once it is terminal."""
        order = order_request(
            symbol, side, qty, type=type, limit_price=limit_price, stop_price=stop_price,
            time_in_force=time_in_force, extended_hours=extended_hours, broker=broker,
            client_order_id=client_order_id,
        )  # fmt: skip
        return await self.submit_request(order, wait=wait, timeout=timeout)

    async def submit_request(
        self, order: OrderRequest, *, wait: bool = False, timeout: float | Unset | None = UNSET
    ) -> Order:
        """Place an already built ``OrderRequest``."""
        timeout = submit_timeout(timeout, wait=wait, default=self.timeout)
        call = self._requests.submit(order, wait=wait, timeout=timeout)
        return await self._call(call, timeout)

    async def replace(
        self,
        order_id: str,
        *,
        qty: Number | None = None,
        limit_price: Number | None = None,
        stop_price: Number | None = None,
        time_in_force: TimeInForce | None = None,
        client_order_id: str | None = None,
        timeout: float | Unset | None = UNSET,
    ) -> Order:
        """Change a working order's terms; returns the replacement (``replaces`` names the
        old order, which ends ``replaced``). At least one change; ``client_order_id`` is the
        replacement's id and the replace's idempotency key (made here when left out).

        Refusals: ``NotReplaceable`` naming the order's state (filled, being canceled),
        ``RiskRejected`` for new terms over a limit, ``InvalidOrder`` for bad terms.
        """
        change = replace_request(
            order_id, qty=qty, limit_price=limit_price, stop_price=stop_price,
            time_in_force=time_in_force, client_order_id=client_order_id,
        )  # fmt: skip
        timeout = submit_timeout(timeout, wait=False, default=self.timeout)
        return await self._call(self._requests.replace(change, timeout=timeout), timeout)

    async def bracket(
        self,
        symbol: str,
        side: Side,
        qty: Number,
        *,
        take_profit: Number,
        stop_loss: Number,
        stop_limit: Number | None = None,
        type: OrderType = "market",
        limit_price: Number | None = None,
        time_in_force: TimeInForce = "day",
        broker: str | None = None,
        list_id: str | None = None,
        timeout: float | Unset | None = UNSET,
    ) -> list[Order]:
        """An entry with a take-profit limit and a stop-loss attached: [entry, take profit,
        stop loss]. The exits work once the entry fills; the fill of one cancels the other."""
        orders = bracket_request(
            symbol, side, qty, take_profit=take_profit, stop_loss=stop_loss,
            stop_limit=stop_limit, type=type, limit_price=limit_price,
            time_in_force=time_in_force, broker=broker, list_id=list_id,
        )  # fmt: skip
        return await self.submit_list(orders, timeout=timeout)

    async def oco(
        self,
        symbol: str,
        side: Side,
        qty: Number,
        *,
        take_profit: Number,
        stop_loss: Number,
        stop_limit: Number | None = None,
        time_in_force: TimeInForce = "gtc",
        broker: str | None = None,
        list_id: str | None = None,
        timeout: float | Unset | None = UNSET,
    ) -> list[Order]:
        """Two exits on ``side`` (``sell`` leaves a long): [take profit, stop loss]; the fill
        of one cancels the other."""
        orders = oco_request(
            symbol, side, qty, take_profit=take_profit, stop_loss=stop_loss,
            stop_limit=stop_limit, time_in_force=time_in_force, broker=broker, list_id=list_id,
        )  # fmt: skip
        return await self.submit_list(orders, timeout=timeout)

    async def oto(
        self,
        parent: OrderRequest,
        child: OrderRequest,
        *,
        broker: str | None = None,
        list_id: str | None = None,
        timeout: float | Unset | None = UNSET,
    ) -> list[Order]:
        """[parent, child]: the child is sent once the parent fills, sized to what filled.
        Build both with ``ult_actors.client.order_request``."""
        orders = oto_request(parent, child, broker=broker, list_id=list_id)
        return await self.submit_list(orders, timeout=timeout)

    async def submit_list(
        self, orders: OrderListRequest, *, timeout: float | Unset | None = UNSET
    ) -> list[Order]:
        """Place an already built ``OrderListRequest``; returns every leg, in its order."""
        timeout = submit_timeout(timeout, wait=False, default=self.timeout)
        return await self._call(self._requests.submit_list(orders, timeout=timeout), timeout)

    async def cancel(self, order_id: str) -> Order:
        """Cancel by ``broker:id``, client order id or bare order id; returns the order now.

        A bare order id held by orders at several brokers raises ``AmbiguousOrderId``.
        """
        return await self._call(self._requests.cancel(order_id))

    async def order(self, order_id: str) -> Order:
        """One order by ``broker:id``, client order id or bare order id; ``NotFound`` if unknown.

        A bare order id held by orders at several brokers raises ``AmbiguousOrderId``.
        """
        return await self._call(self._requests.order(order_id))

    async def orders(
        self, open: bool = False, *, broker: str | None = None, limit: int = 1000
    ) -> list[Order]:
        """Orders the service knows, newest last; ``open=True`` for open ones only."""
        return await self._call(self._requests.orders(open, broker, limit))

    async def positions(self, broker: str | None = None) -> list[Position]:
        """Positions at one broker, or at all."""
        return await self._call(self._requests.positions(broker))

    async def account(self, broker: str | None = None) -> list[Account]:
        """Balances: one ``Account`` per broker (just ``broker``'s if given)."""
        return await self._call(self._requests.account(broker))

    async def close_position(self, symbol: str, broker: str | None = None) -> list[Order]:
        """Close the position in ``symbol``: its open orders canceled, then a closing order.

        ``broker`` may be left out when one broker holds the symbol. Returns the
        canceled orders and the closing order (journaled like any order).
        """
        return await self._call(self._requests.close_position(symbol, broker))

    async def flatten(self, broker: str | None = None) -> list[Order]:
        """Cancel every open order and close every position, at ``broker`` or at all.

        Passes in every trading state (it only reduces exposure). Returns the
        canceled and the closing orders.
        """
        return await self._call(self._requests.flatten(broker))

    async def health(self) -> HealthSnapshot:
        """The actor tree's health, root first."""
        return await self._call(self._requests.health())

    async def report(
        self,
        *,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        broker: str | None = None,
        symbol: str | None = None,
        by: ReportGrouping = "symbol",
        with_orders: bool = False,
        with_charts: bool = False,
        timeout: float | Unset | None = UNSET,
    ) -> CostReport:
        """What the journaled orders cost: fees, slippage against arrival, shortfall,
        time to fill, grouped ``by`` order, symbol, broker or UTC day (what ``ult report``
        shows). ``since``/``until`` bound the orders' creation (naive: UTC);
        ``with_orders`` adds every order's own figures (at most 50,000 orders),
        ``with_charts`` the binned distributions of the ``--html`` page."""
        query = report_query(since, until, broker, symbol, by, with_orders, with_charts)
        return await self._call(self._requests.report(query), timeout)

    async def kill_switch(self, on: bool) -> str:
        """On: halt trading and cancel every open order. Off: trade again. Returns what was done."""
        return await self._call(self._requests.kill_switch(on))

    async def trading_state(self, state: TradingState, broker: str | None = None) -> str:
        """Set active / reducing / halted, globally or for one broker."""
        return await self._call(self._requests.trading_state(state, broker))

    async def ping(self) -> None:
        """Round trip to the service; raises if it does not answer."""
        await self._call(self._requests.ping())

    async def subscribe(self, topics: Iterable[EventTopic] | None = None) -> AsyncIterator[Event]:
        """Subscribe now; returns the iterator of events (``SubscriptionLost`` if dropped).

        Unlike ``events()``, the subscription is in place when this returns,
        so nothing that happens afterwards can be missed.
        """
        if self._subscribed:
            raise Internal("this client already follows events; use one iterator per client")
        if self._remote is not None:
            await self._remote.asubscribe(topics)
            self._subscribed = True
            return self._remote.aevents()
        if self._connection is not None:
            self._connection.want_events()
        await self._call(self._requests.subscribe(topics))
        self._subscribed = True
        assert self._connection is not None
        return _event_stream.received(self._connection, self.socket_path)

    def events(self, topics: Iterable[EventTopic] | None = None) -> AsyncIterator[Event]:
        """Follow the event stream; ``SubscriptionLost`` says why if the service drops us."""
        return _event_stream.follow(self, topics)

    # -- plumbing ---------------------------------------------------------------

    async def _call(self, call: Call[T], timeout: float | Unset | None = UNSET) -> T:
        request = call.request
        if self._connection is not None and self._connection.closed_error is not None:
            raise self._connection.closed_error
        if self._stack is None:
            raise ConnectionLost(self.socket_path, "the client is not connected (use async with)")
        if timeout is UNSET:
            timeout = self.timeout
        if self._remote is not None:
            try:
                with anyio.fail_after(timeout):
                    reply = await self._remote.acall(request)
            except TimeoutError:
                raise no_reply(request, timeout) from None
            return call.read(reply)
        assert self._connection is not None
        answer = await self._connection.request(request, timeout)
        if answer is None:
            raise no_reply(request, timeout)
        return call.read(answer)
