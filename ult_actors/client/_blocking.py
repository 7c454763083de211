"""``Client``: the service over one connection with plain blocking sockets.

The simplest way in for scripts and synchronous trading code, and the
fastest for one request at a time (no event loop in between). Calls are
serialised by a lock, so threads may share a client; ``submit_many``
pipelines a batch over the one connection.
"""

from __future__ import annotations

import collections
import itertools
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from ult_actors.client._errors import ConnectionLost, ServiceUnreachable, SubscriptionLost
from ult_actors.client._requests import Number, expect, order_request
from ult_actors.errors import Timeout, UltError, from_info
from ult_actors.ipc.framing import FrameReader, ReplyCodec
from ult_actors.ipc.paths import resolve_socket
from ult_actors.messages import (
    Account,
    AccountsReply,
    Cancel,
    ErrorReply,
    Event,
    EventMessage,
    EventTopic,
    GetAccount,
    GetHealth,
    GetOrder,
    GetPositions,
    HealthReply,
    HealthSnapshot,
    ListOrders,
    OkReply,
    Order,
    OrderReply,
    OrderRequest,
    OrdersReply,
    OrderType,
    Ping,
    Position,
    PositionsReply,
    Reply,
    Request,
    SetKillSwitch,
    SetTradingState,
    Side,
    Submit,
    Subscribe,
    SubscriptionDropped,
    TimeInForce,
    TradingState,
)

_MAX_REPLY_BYTES = 64 << 20
_UNSET: Any = object()


class Client:
    """A blocking connection to the service; use as ``with Client() as c``.

    ``socket`` defaults as for the server; ``timeout`` bounds each request
    (``None``: no bound); a submit with ``wait=True`` is unbounded unless
    given its own ``timeout``.
    """

    def __init__(self, socket: str | Path | None = None, *, timeout: float | None = 60.0) -> None:
        self.socket_path = resolve_socket(str(socket) if socket else None).path
        self.timeout = timeout
        self._sock: Any = None
        self._ids = itertools.count(1)
        self._codec = ReplyCodec()
        self._frames = FrameReader(_MAX_REPLY_BYTES)
        self._ready: collections.deque[Reply] = collections.deque()
        self._events: collections.deque[EventMessage | SubscriptionDropped] = collections.deque()
        self._lock = threading.RLock()
        self._closed_error: UltError | None = None

    def connect(self) -> Client:
        """Open the connection (``with`` does this for you)."""
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
        timeout: float | None = _UNSET,
    ) -> Order:
        """Place an order; with ``wait=True`` the reply comes once it is terminal."""
        order = order_request(
            symbol, side, qty, type=type, limit_price=limit_price, stop_price=stop_price,
            time_in_force=time_in_force, extended_hours=extended_hours, broker=broker,
            client_order_id=client_order_id,
        )  # fmt: skip
        if timeout is _UNSET:
            timeout = None if wait else self.timeout
        reply = self._call(Submit(id=next(self._ids), order=order, wait=wait), timeout)
        return expect(reply, OrderReply).order

    def submit_many(
        self, orders: Sequence[OrderRequest], *, window: int = 512
    ) -> list[Order | UltError]:
        """Pipeline a batch: up to ``window`` requests in flight; results in input order.

        Each entry is the order, or the ``UltError`` that refused it.
        """
        with self._lock:
            results: list[Order | UltError | None] = [None] * len(orders)
            index: dict[int, int] = {}
            sent = answered = 0
            while answered < len(orders):
                batch = []
                while sent < len(orders) and sent - answered < window:
                    rid = next(self._ids)
                    index[rid] = sent
                    batch.append(self._codec.encode(Submit(id=rid, order=orders[sent])))
                    sent += 1
                if batch:
                    self._sendall(b"".join(batch))
                reply = self._next_reply(self.timeout)
                position = index.pop(getattr(reply, "id", -1), None)
                if position is None:
                    continue
                try:
                    results[position] = expect(reply, OrderReply).order
                except UltError as exc:
                    results[position] = exc
                answered += 1
            return [r for r in results if r is not None]

    def cancel(self, order_id: str) -> Order:
        """Cancel by order id or client order id; returns the order as it now stands."""
        return expect(self._call(Cancel(id=next(self._ids), order_id=order_id)), OrderReply).order

    def order(self, order_id: str) -> Order:
        """One order by order id or client order id; ``NotFound`` if unknown."""
        return expect(self._call(GetOrder(id=next(self._ids), order_id=order_id)), OrderReply).order

    def orders(
        self, open: bool = False, *, broker: str | None = None, limit: int = 1000
    ) -> list[Order]:
        """Orders the service knows; ``open=True`` for open ones only."""
        request = ListOrders(id=next(self._ids), open_only=open, broker=broker, limit=limit)
        return expect(self._call(request), OrdersReply).orders

    def positions(self, broker: str | None = None) -> list[Position]:
        """Positions at one broker, or at all."""
        request = GetPositions(id=next(self._ids), broker=broker)
        return expect(self._call(request), PositionsReply).positions

    def account(self, broker: str | None = None) -> list[Account]:
        """Balances: one ``Account`` per broker (just ``broker``'s if given)."""
        request = GetAccount(id=next(self._ids), broker=broker)
        return expect(self._call(request), AccountsReply).accounts

    def health(self) -> HealthSnapshot:
        """The actor tree's health, root first."""
        return expect(self._call(GetHealth(id=next(self._ids))), HealthReply).health

    def kill_switch(self, on: bool) -> str:
        """On: halt trading and cancel every open order. Off: trade again. Returns what was done."""
        return expect(self._call(SetKillSwitch(id=next(self._ids), on=on)), OkReply).detail

    def trading_state(self, state: TradingState, broker: str | None = None) -> str:
        """Set active / reducing / halted, globally or for one broker."""
        request = SetTradingState(id=next(self._ids), state=state, broker=broker)
        return expect(self._call(request), OkReply).detail

    def ping(self) -> None:
        """Round trip to the service; raises if it does not answer."""
        expect(self._call(Ping(id=next(self._ids))), OkReply)

    def subscribe(
        self, topics: Iterable[EventTopic] | None = None, *, timeout: float | None = None
    ) -> Iterator[Event]:
        """Subscribe now; returns the iterator of events (``SubscriptionLost`` if dropped).

        The subscription is in place when this returns, so nothing that happens
        afterwards is missed. ``timeout`` bounds the wait for each event.
        """
        request = (
            Subscribe(id=next(self._ids))
            if topics is None
            else Subscribe(id=next(self._ids), topics=list(topics))
        )
        expect(self._call(request), OkReply)
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
            if isinstance(message, SubscriptionDropped):
                raise SubscriptionLost(message.reason)
            yield message.event

    # -- plumbing ---------------------------------------------------------------

    def _call(self, request: Request, timeout: float | None = _UNSET) -> Reply:
        if timeout is _UNSET:
            timeout = self.timeout
        with self._lock:
            self._sendall(self._codec.encode(request))
            while True:
                reply = self._next_reply(timeout)
                if getattr(reply, "id", None) == request.id:
                    return reply

    def _sendall(self, data: bytes) -> None:
        if self._closed_error is not None:
            raise self._closed_error
        if self._sock is None:
            raise ConnectionLost(self.socket_path, "the client is not connected (use with)")
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(data)
        except OSError as exc:
            raise self._lost(f"sending failed: {exc}") from None

    def _next_reply(self, timeout: float | None) -> Reply:
        """The next reply that answers a request (events are set aside)."""
        while not self._ready:
            self._read_more(timeout)
        return self._ready.popleft()

    def _read_more(self, timeout: float | None) -> None:
        if self._closed_error is not None:
            raise self._closed_error
        if self._sock is None:
            raise ConnectionLost(self.socket_path, "the client is not connected (use with)")
        try:
            self._sock.settimeout(timeout)
            data = self._sock.recv(1 << 16)
        except TimeoutError:
            raise Timeout(f"no reply from the service within {timeout} s") from None
        except OSError as exc:
            raise self._lost(f"connection broken: {exc}") from None
        if not data:
            raise self._lost("the service closed the connection")
        try:
            for payload in self._frames.feed(data):
                reply = self._codec.decode(payload)
                if isinstance(reply, EventMessage | SubscriptionDropped):
                    self._events.append(reply)
                elif isinstance(reply, ErrorReply) and reply.id == 0:
                    # About the connection, not one request (unauthorized, oversize).
                    self._closed_error = from_info(reply.error)
                else:
                    self._ready.append(reply)
        except msgspec.DecodeError as exc:
            raise self._lost(f"unreadable reply from the service: {exc}") from None

    def _lost(self, reason: str) -> UltError:
        self._closed_error = self._closed_error or ConnectionLost(self.socket_path, reason)
        return self._closed_error
