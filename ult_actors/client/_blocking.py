"""``Client``: the service over one connection with plain blocking sockets.

The simplest way in for scripts and synchronous trading code, and the
fastest for one request at a time (no event loop in between). Calls are
serialised by a lock, so threads may share a client; ``submit_many``
pipelines a batch over the one connection.
"""

from __future__ import annotations

import collections
import datetime
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import msgspec

from ult_actors.client._call import Call
from ult_actors.client._errors import ConnectionLost, ServiceUnreachable
from ult_actors.client._remote import remote_transport
from ult_actors.client._requests import (
    EVENT_FRAMES,
    MAX_REPLY_BYTES,
    UNSET,
    Number,
    Requests,
    Unset,
    bracket_request,
    connection_error,
    event_of,
    framed,
    no_reply,
    oco_request,
    order_request,
    oto_request,
    read_order,
    replace_request,
    report_query,
    submit_timeout,
)
from ult_actors.errors import Timeout, UltError
from ult_actors.ipc.framing import FrameReader, FrameTooLarge, ReplyCodec
from ult_actors.ipc.paths import resolve_socket
from ult_actors.messages import (
    Account,
    CostReport,
    Event,
    EventMessage,
    EventTopic,
    HealthSnapshot,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderType,
    Position,
    Reply,
    ReportGrouping,
    Side,
    SubscriptionDropped,
    TimeInForce,
    TradingState,
)

T = TypeVar("T")


class Client:
    """A blocking connection to the service; use as ``with Client() as c``.

    ``socket`` defaults as for the server; ``timeout`` bounds each request
    (``None``: no bound); a submit with ``wait=True`` is unbounded unless
    given its own ``timeout``.

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
        self._sock: Any = None
        self._requests = Requests()
        self._codec = ReplyCodec()
        self._frames = FrameReader(MAX_REPLY_BYTES)
        self._ready: collections.deque[Reply] = collections.deque()
        self._events: collections.deque[EventMessage | SubscriptionDropped] = collections.deque()
        self._lock = threading.RLock()
        self._closed_error: UltError | None = None

    def connect(self) -> Client:
        """Open the connection (``with`` does this for you)."""
        if self._remote is not None:
            self._remote.open()
            return self
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.socket_path))
        except OSError as exc:
            sock.close()
            raise ServiceUnreachable(self.socket_path, exc.strerror or str(exc)) from None
        self._sock = sock
        return self

    def close(self) -> None:
        """Close the connection."""
        if self._remote is not None:
            self._remote.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------

    def submit(
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
        timeout = submit_timeout(timeout, wait=wait, default=self.timeout)
        return self._call(self._requests.submit(order, wait=wait, timeout=timeout), timeout)

    def submit_many(
        self, orders: Sequence[OrderRequest], *, window: int = 512
    ) -> list[Order | UltError]:
        """Pipeline a batch: up to ``window`` requests in flight; results in input order.

        Each entry is the order, or the ``UltError`` that refused it.
        """
        if self._remote is not None:
            requests = [self._requests.submit(o, timeout=self.timeout).request for o in orders]
            return [
                _order_or_error(reply)
                for reply in self._remote.call_many(requests, window, self.timeout)
            ]
        with self._lock:
            results: list[Order | UltError | None] = [None] * len(orders)
            index: dict[int, int] = {}
            sent = answered = 0
            while answered < len(orders):
                batch = []
                while sent < len(orders) and sent - answered < window:
                    request = self._requests.submit(orders[sent], timeout=self.timeout).request
                    index[request.id] = sent
                    batch.append(framed(self._codec, request))
                    sent += 1
                if batch:
                    self._sendall(b"".join(batch))
                reply = self._next_reply(self.timeout)
                position = index.pop(getattr(reply, "id", -1), None)
                if position is None:
                    continue
                try:
                    results[position] = read_order(reply)
                except UltError as exc:
                    results[position] = exc
                answered += 1
            return [r for r in results if r is not None]

    def replace(
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
        return self._call(self._requests.replace(change, timeout=timeout), timeout)

    def bracket(
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
        return self.submit_list(orders, timeout=timeout)

    def oco(
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
        return self.submit_list(orders, timeout=timeout)

    def oto(
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
        return self.submit_list(orders, timeout=timeout)

    def submit_list(
        self, orders: OrderListRequest, *, timeout: float | Unset | None = UNSET
    ) -> list[Order]:
        """Place an already built ``OrderListRequest``; returns every leg, in its order."""
        timeout = submit_timeout(timeout, wait=False, default=self.timeout)
        return self._call(self._requests.submit_list(orders, timeout=timeout), timeout)

    def cancel(self, order_id: str) -> Order:
        """Cancel by ``broker:id``, client order id or bare order id; returns the order now.

        A bare order id held by orders at several brokers raises ``AmbiguousOrderId``.
        """
        return self._call(self._requests.cancel(order_id))

    def order(self, order_id: str) -> Order:
        """One order by ``broker:id``, client order id or bare order id; ``NotFound`` if unknown.

        A bare order id held by orders at several brokers raises ``AmbiguousOrderId``.
        """
        return self._call(self._requests.order(order_id))

    def orders(
        self, open: bool = False, *, broker: str | None = None, limit: int = 1000
    ) -> list[Order]:
        """Orders the service knows; ``open=True`` for open ones only."""
        return self._call(self._requests.orders(open, broker, limit))

    def positions(self, broker: str | None = None) -> list[Position]:
        """Positions at one broker, or at all."""
        return self._call(self._requests.positions(broker))

    def account(self, broker: str | None = None) -> list[Account]:
        """Balances: one ``Account`` per broker (just ``broker``'s if given)."""
        return self._call(self._requests.account(broker))

    def close_position(self, symbol: str, broker: str | None = None) -> list[Order]:
        """Close the position in ``symbol``: its open orders canceled, then a closing order.

        ``broker`` may be left out when one broker holds the symbol. Returns the
        canceled orders and the closing order (journaled like any order).
        """
        return self._call(self._requests.close_position(symbol, broker))

    def flatten(self, broker: str | None = None) -> list[Order]:
        """Cancel every open order and close every position, at ``broker`` or at all.

        Passes in every trading state (it only reduces exposure). Returns the
        canceled and the closing orders.
        """
        return self._call(self._requests.flatten(broker))

    def health(self) -> HealthSnapshot:
        """The actor tree's health, root first."""
        return self._call(self._requests.health())

    def report(
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
        return self._call(self._requests.report(query), timeout)

    def kill_switch(self, on: bool) -> str:
        """On: halt trading and cancel every open order. Off: trade again. Returns what was done."""
        return self._call(self._requests.kill_switch(on))

    def trading_state(self, state: TradingState, broker: str | None = None) -> str:
        """Set active / reducing / halted, globally or for one broker."""
        return self._call(self._requests.trading_state(state, broker))

    def ping(self) -> None:
        """Round trip to the service; raises if it does not answer."""
        self._call(self._requests.ping())

    def subscribe(
        self, topics: Iterable[EventTopic] | None = None, *, timeout: float | None = None
    ) -> Iterator[Event]:
        """Subscribe now; returns the iterator of events (``SubscriptionLost`` if dropped).

        The subscription is in place when this returns, so nothing that happens
        afterwards is missed. ``timeout`` bounds the wait for each event.
        """
        if self._remote is not None:
            self._remote.subscribe(topics, self.timeout)
            return self._remote.events(timeout)
        self._call(self._requests.subscribe(topics))
        return self._received_events(timeout)

    def events(
        self, topics: Iterable[EventTopic] | None = None, *, timeout: float | None = None
    ) -> Iterator[Event]:
        """Follow the event stream; ``SubscriptionLost`` says why if the service drops us.

        ``timeout`` bounds the wait for each event (``Timeout`` when it passes).
        """
        yield from self.subscribe(topics, timeout=timeout)

    def _received_events(self, timeout: float | None) -> Iterator[Event]:
        while True:
            with self._lock:
                while not self._events:
                    self._read_more(timeout)
                message = self._events.popleft()
            yield event_of(message)

    # -- plumbing ---------------------------------------------------------------

    def _call(self, call: Call[T], timeout: float | Unset | None = UNSET) -> T:
        if timeout is UNSET:
            timeout = self.timeout
        if self._remote is not None:
            try:
                reply = self._remote.call(call.request, timeout)
            except Timeout:
                raise no_reply(call.request, timeout) from None
            return call.read(reply)
        with self._lock:
            self._sendall(framed(self._codec, call.request))
            try:
                while True:
                    reply = self._next_reply(timeout)
                    if getattr(reply, "id", None) == call.request.id:
                        break
            except Timeout:
                raise no_reply(call.request, timeout) from None
        return call.read(reply)

    def _open_socket(self) -> Any:
        """The socket to use; the error that ended the connection, or ``ConnectionLost``
        if it was never opened."""
        if self._closed_error is not None:
            raise self._closed_error
        if self._sock is None:
            raise ConnectionLost(self.socket_path, "the client is not connected (use with)")
        return self._sock

    def _sendall(self, data: bytes) -> None:
        sock = self._open_socket()
        try:
            sock.settimeout(self.timeout)
            sock.sendall(data)
        except OSError as exc:
            self._read_what_is_left()
            raise self._lost(f"sending failed: {exc}") from None

    def _read_what_is_left(self) -> None:
        """After a failed send: read what the service sent before it closed, so the
        error it gave for the whole connection (``busy``, ``unauthorized``) is the
        one raised rather than a bare ``ConnectionLost``."""
        try:
            self._read_more(0.1)
            while True:
                self._read_more(0.1)
        except UltError:
            pass

    def _next_reply(self, timeout: float | None) -> Reply:
        """The next reply that answers a request (events are set aside)."""
        while not self._ready:
            self._read_more(timeout)
        return self._ready.popleft()

    def _read_more(self, timeout: float | None) -> None:
        sock = self._open_socket()
        try:
            sock.settimeout(timeout)
            data = sock.recv(1 << 16)
        except TimeoutError:
            raise Timeout(f"no reply from the service within {timeout} s") from None
        except OSError as exc:
            raise self._lost(f"connection broken: {exc}") from None
        if not data:
            raise self._lost("the service closed the connection")
        try:
            frames = self._frames
            frames.add(data)
            while (payload := frames.take()) is not None:
                reply = self._codec.decode(payload)
                if isinstance(reply, EVENT_FRAMES):
                    self._events.append(reply)
                elif (error := connection_error(reply)) is not None:
                    self._closed_error = error
                else:
                    self._ready.append(reply)
        except (msgspec.DecodeError, FrameTooLarge) as exc:
            raise self._lost(f"unreadable reply from the service: {exc}") from None

    def _lost(self, reason: str) -> UltError:
        self._closed_error = self._closed_error or ConnectionLost(self.socket_path, reason)
        return self._closed_error


def _order_or_error(reply: Reply | UltError) -> Order | UltError:
    if isinstance(reply, UltError):
        return reply
    try:
        return read_order(reply)
    except UltError as exc:
        return exc
