"""``ult sim oanda``: a loopback simulator of OANDA's v20 REST and streaming API.

Any v20 client can be pointed at it (``OANDA_BASE_URL=http://127.0.0.1:PORT``;
the stream endpoints are on the same port). It binds 127.0.0.1 only, accepts
the token in ``OANDA_API_TOKEN`` (or ``--token``; default ``ult-sim-token``)
for the account in ``OANDA_ACCOUNT_ID`` (or ``--account``), and answers a
wrong token with OANDA's 401 body and a foreign account with 403.

v20 endpoints (under ``/v3``; times in RFC 3339 unless the request sends
``Accept-Datetime-Format: UNIX``):

- ``GET /accounts``, ``/accounts/{id}``, ``/accounts/{id}/summary``,
  ``/accounts/{id}/instruments``
- ``POST /accounts/{id}/orders`` (MARKET, LIMIT, STOP, MARKET_IF_TOUCHED,
  with ``takeProfitOnFill``/``stopLossOnFill``/``trailingStopLossOnFill``;
  TAKE_PROFIT, STOP_LOSS, TRAILING_STOP_LOSS on an open ``tradeID``;
  400 with ``orderRejectTransaction``/``errorMessage`` when malformed),
  ``GET .../orders``, ``.../pendingOrders``, ``.../orders/{id or @clientID}``,
  ``PUT .../orders/{specifier}`` (replace: cancel and create in one batch),
  ``PUT .../orders/{specifier}/cancel``
- ``GET .../positions``, ``.../openPositions``, ``.../positions/{instrument}``,
  ``.../trades``, ``.../openTrades``, ``.../trades/{id}`` (with the orders on it),
  ``PUT .../trades/{id}/orders`` (set, replace or cancel them);
  ``PUT .../positions/{instrument}/close``
- ``GET .../transactions`` (pages of ``idrange`` URLs), ``.../transactions/idrange``,
  ``.../transactions/sinceid?id=N``, ``.../transactions/{id}``,
  ``.../transactions/stream`` (JSON lines, ``HEARTBEAT`` every
  ``--heartbeat`` seconds, default 5)
- ``GET .../pricing?instruments=A,B`` and ``.../pricing/stream?instruments=A,B``

Prices are a seeded random walk (``--seed``), one step every ``--tick``
seconds; resting orders fill when the walk reaches them.

OANDA's limits (``limits``: requests per second on one connection, new
connections per second; 429 with ``Retry-After`` beyond them) are off unless
set (``--rate-limit``, ``--connection-limit``, ``POST /_sim/rate-limit``).

Admin endpoints (same port, no token; for tests and chaos scripts on this
host). The fault vocabulary is the Alpaca simulator's, so one chaos script
drives both (fields: ``ult_actors/sim/faults.py``; kinds: ``ult_actors/sim/oanda/faults.py``):

- ``POST /_sim/faults`` — arm a fault or a list of faults:
  ``{"kind": K, "count": N, "method": M, "path": P, ...}`` with K one of
  ``drop`` (close, no reply, not applied), ``status`` (``status``, default
  503), ``rate_limit`` (429; ``Retry-After`` when ``retry_after_header``),
  ``slow`` (``delay_s``), ``lose_reply`` (apply, then close without reply),
  ``garble_reply`` (apply, then answer with the body cut in half),
  ``stream_drop`` (cut streams after ``after_events`` more transactions),
  ``stream_refuse`` (503 to the next stream requests), ``stream_mute``
  or ``silent`` (current streams go silent: no transactions, no heartbeats),
  ``heartbeat_stop`` (current streams stop heartbeats only), ``drop_events``
  (transactions of ``events`` types never streamed, with ``probability``
  from the seeded generator; the REST record stays right). ``path`` is a
  prefix of the request path.
- ``GET /_sim/faults`` / ``DELETE /_sim/faults`` — list / disarm.
- ``POST /_sim/rate-limit`` — ``{"per_second": 100, "new_connections_per_second": 2}``
  (OANDA's figures; 0 or absent: no limit).
- ``POST /_sim/stream/drop`` — cut every open stream now.
- ``POST /_sim/prices`` — ``{"EUR_USD": "1.09000"}`` (mid, usual spread) or
  ``{"EUR_USD": {"bid": "1.0899", "ask": "1.0901", "liquidity": "400"}}``
  (liquidity optional: fewer units than an order's fill it in part); fills
  and expires what the new prices trigger.
- ``POST /_sim/tick`` — one step of the price walk now.
- ``GET /_sim/state`` — counters, armed and fired faults, open streams.

Example: ``curl -X POST 127.0.0.1:8620/_sim/faults -d '{"kind": "status", "status": 503, "count": 2}'``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any
from urllib.parse import unquote

import msgspec
import trio

from ult_actors.sim.faults import FaultBoard, decode_faults, garbled
from ult_actors.sim.http import (
    DropConnection,
    HttpRequest,
    HttpResponse,
    ReplyStyle,
    StreamResponse,
    bound_port,
    serve_listeners,
)
from ult_actors.sim.oanda import views
from ult_actors.sim.oanda.book import OandaBook, Reply, Transaction
from ult_actors.sim.oanda.faults import API_PREFIX, ON_ARM_KINDS, Fault
from ult_actors.sim.oanda.limits import Limiter, RateLimits
from ult_actors.sim.oanda.prices import DEFAULT_LIQUIDITY, PriceFeed
from ult_actors.sim.oanda.streams import CUT, StreamSlot, price_lines, transaction_lines
from ult_actors.sim.oanda.wire import DatetimeFormat, datetime_format, render

DEFAULT_TOKEN = "ult-sim-token"
DEFAULT_ACCOUNT = "101-001-1000001-001"
DEFAULT_PORT = 8620
#: OANDA's body for a missing or wrong token.
UNAUTHORIZED_BODY = {"errorMessage": "Insufficient authorization to perform request."}
FORBIDDEN_BODY = {"errorMessage": "The provided request was forbidden."}
_STREAM_ENDPOINTS = (["transactions", "stream"], ["pricing", "stream"])
#: What the HTTP server answers on its own: OANDA's error shape, reason phrases, and a
#: request it cannot parse just closes the connection.
_REPLY_STYLE = ReplyStyle(
    too_large=HttpResponse(413, b'{"errorMessage":"too large"}'), reason_phrases=True
)

__all__ = ["DEFAULT_ACCOUNT", "DEFAULT_TOKEN", "Fault", "OandaSimulator", "main"]


class OandaSimulator:
    """One simulated account behind a v20-shaped HTTP server on 127.0.0.1.

    Start it in a nursery: ``port = await nursery.start(sim.serve)``. Tests
    steer it through ``arm``, ``feed`` and ``book`` directly; other
    processes use the ``/_sim`` endpoints.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        account_id: str = DEFAULT_ACCOUNT,
        seed: int = 1,
        now_ns: Callable[[], int] = time.time_ns,
        heartbeat_s: float = 5.0,
        tick_s: float = 1.0,
        balance: Decimal = Decimal(100_000),
        rate_limits: RateLimits | None = None,
        commission_per_100k: Decimal = Decimal(0),
    ) -> None:
        self._token = token
        self.account_id = account_id
        self.now_ns = now_ns
        self.heartbeat_s = heartbeat_s
        self.tick_s = tick_s
        self.feed = PriceFeed(seed)
        self.book = OandaBook(
            account_id,
            feed=self.feed,
            now_ns=now_ns,
            balance=balance,
            commission_per_100k=commission_per_100k,
        )
        self.faults = FaultBoard(API_PREFIX)
        self.limiter = Limiter(rate_limits)
        self.port: int | None = None
        #: Requests that reached the v20 routes (faulted ones included).
        self.requests = 0
        self._streams: set[StreamSlot] = set()
        #: Draws for ``drop_events`` (its own, so prices do not depend on what was dropped).
        self._drop_rng = random.Random(seed)
        #: Transactions a ``drop_events`` fault kept off every stream.
        self.events_dropped = 0
        self.book.listeners.append(self._publish)

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the simulator is not serving yet")
        return f"http://127.0.0.1:{self.port}"

    async def serve(
        self, port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on 127.0.0.1:``port`` (0: any free port) until cancelled."""
        # Bound before any nursery, so a taken port is a plain OSError for the caller.
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        self.port = bound_port(listeners)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(serve_listeners, self.handle, listeners, style=_REPLY_STYLE))
            if self.tick_s > 0:
                nursery.start_soon(self._tick_loop)
            task_status.started(self.port)

    async def _tick_loop(self) -> None:
        while True:
            await trio.sleep(self.tick_s)
            self.tick()

    def tick(self) -> None:
        """One step of the price walk, then whatever it triggers."""
        self.feed.step()
        self.book.on_prices()
        self._wake_price_streams()

    # -- faults and streams ---------------------------------------------------

    def arm(self, fault: Fault) -> None:
        """Arm a fault (``ValueError`` if it cannot work); stream faults act on open streams now."""
        self.faults.arm(fault)
        if fault.kind in ON_ARM_KINDS and self.faults.take(fault.kind):
            for slot in self._streams:
                if fault.kind in ("stream_mute", "silent"):
                    slot.muted = True
                else:
                    slot.beats = False
        elif fault.kind == "stream_drop" and self.faults.cut_now():
            self.cut_streams()

    def cut_streams(self) -> int:
        """Close every open stream (after what is already queued); how many."""
        slots = list(self._streams)
        for slot in slots:
            slot.push(CUT)
        return len(slots)

    def _publish(self, txn: Transaction) -> None:
        if self._dropped(txn):
            return
        for slot in self._streams:
            if slot.kind == "transactions":
                slot.push(txn)
        if self.faults.stream_cut_due():
            self.cut_streams()

    def _dropped(self, txn: Transaction) -> bool:
        """Whether an armed ``drop_events`` fault keeps this transaction off every stream."""
        for fault in self.faults.armed():
            if fault.kind != "drop_events":
                continue
            assert isinstance(fault, Fault)
            if fault.events and txn.get("type") not in fault.events:
                return False
            if self._drop_rng.random() >= fault.probability:
                return False
            self.faults.take("drop_events")
            self.events_dropped += 1
            return True
        return False

    def _wake_price_streams(self) -> None:
        for slot in self._streams:
            if slot.kind == "pricing":
                slot.poke()

    def _stream(self, lines: AsyncIterator[bytes], slot: StreamSlot) -> StreamResponse:
        async def chunks() -> AsyncIterator[bytes]:
            self._streams.add(slot)
            try:
                async for chunk in lines:
                    yield chunk
            finally:
                self._streams.discard(slot)

        return StreamResponse(200, chunks(), content_type="application/octet-stream")

    def state(self) -> dict[str, Any]:
        """Counters for ``GET /_sim/state``."""
        book = self.book
        return {
            "requests": self.requests,
            "last_transaction_id": book.last_id,
            "orders": len(book.orders),
            "pending_orders": sum(1 for o in book.orders.values() if o.state == "PENDING"),
            "balance": f"{book.balance:f}",
            "stream_clients": len(self._streams),
            "events_dropped": self.events_dropped,
            "rate_limits": msgspec.to_builtins(self.limiter.limits),
            "rate_limited": self.limiter.refused,
            **self.faults.report(),
        }

    # -- requests -------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpResponse | StreamResponse:
        """Route one request (the HTTP server calls this)."""
        parts = [unquote(p) for p in request.path.split("/") if p]
        if parts[:1] == ["_sim"]:
            return self._admin(request, parts[1:])
        self.requests += 1
        if (refusal := self.limiter.check()) is not None:
            headers = [("Retry-After", f"{math.ceil(refusal.retry_after_s)}")]
            if refusal.close:
                headers.append(("Connection", "close"))
            return _json(429, {"errorMessage": refusal.message}, "RFC3339", headers)
        fault = None
        if parts[3:] in _STREAM_ENDPOINTS:
            if self.faults.take("stream_refuse"):
                return _json(503, {"errorMessage": "Service unavailable"}, "RFC3339")
        else:
            fault = self.faults.take_request_fault(request.method, request.path)
        if fault is not None:
            if fault.kind == "drop":
                raise DropConnection
            if fault.kind == "slow":
                await trio.sleep(fault.delay_s)
            elif fault.kind == "status":
                return _json(
                    fault.status, {"errorMessage": _REASONS.get(fault.status, "Error")}, "RFC3339"
                )
            elif fault.kind == "rate_limit":
                headers = []
                if fault.retry_after_header:
                    headers.append(("Retry-After", f"{math.ceil(fault.retry_after_s)}"))
                return _json(429, {"errorMessage": "Rate limit exceeded"}, "RFC3339", headers)
        fmt = datetime_format(request.headers)
        if request.headers.get("authorization") != f"Bearer {self._token}":
            return _json(401, UNAUTHORIZED_BODY, fmt)
        reply = self._v20(request, parts, fmt)
        if fault is not None and fault.kind == "lose_reply":
            raise DropConnection
        if fault is not None and fault.kind == "garble_reply" and isinstance(reply, HttpResponse):
            reply.body = garbled(reply.body)  # applied, but the answer cannot be read
        return reply

    def _v20(
        self, request: HttpRequest, parts: list[str], fmt: DatetimeFormat
    ) -> HttpResponse | StreamResponse:
        if parts[:2] != ["v3", "accounts"]:
            return _json(404, {"errorMessage": "No such endpoint"}, fmt)
        if len(parts) == 2:
            return self._only("GET", request, fmt) or _json(
                200, {"accounts": [{"id": self.account_id, "tags": []}]}, fmt
            )
        if parts[2] != self.account_id:
            return _json(403, FORBIDDEN_BODY, fmt)
        rest = parts[3:]
        book = self.book
        method = request.method
        if not rest:
            if wrong := self._only("GET", request, fmt):
                return wrong
            account = views.summary(book)
            account.update(
                orders=[book.order_wire(o) for o in book.orders.values() if o.state == "PENDING"],
                positions=views.positions(book, open_only=False)[1]["positions"],
                trades=views.trades(book, open_only=True)[1]["trades"],
            )
            return _json(200, {"account": account, "lastTransactionID": book.last_id}, fmt)
        head = rest[0]
        if rest == ["summary"]:
            return self._only("GET", request, fmt) or _json(
                200, {"account": views.summary(book), "lastTransactionID": book.last_id}, fmt
            )
        if rest == ["instruments"]:
            return self._only("GET", request, fmt) or _json(
                200,
                {"instruments": views.instruments(book), "lastTransactionID": book.last_id},
                fmt,
            )
        if rest == ["orders"]:
            if method == "POST":
                return _with_body(request, fmt, book.create_order)
            return self._only("GET", request, fmt) or _json(*book.list_orders(request.query), fmt)
        if rest == ["pendingOrders"]:
            return self._only("GET", request, fmt) or _json(
                *book.list_orders({}, pending_only=True), fmt
            )
        if head == "orders" and len(rest) == 2:
            if method == "PUT":
                return _with_body(request, fmt, partial(book.replace_order, rest[1]))
            return self._only("GET", request, fmt) or _json(*book.get_order(rest[1]), fmt)
        if head == "orders" and len(rest) == 3 and rest[2] == "cancel":
            return self._only("PUT", request, fmt) or _json(*book.cancel_order(rest[1]), fmt)
        if rest in (["positions"], ["openPositions"]):
            return self._only("GET", request, fmt) or _json(
                *views.positions(book, open_only=head == "openPositions"), fmt
            )
        if head == "positions" and len(rest) == 2:
            return self._only("GET", request, fmt) or _json(*views.position(book, rest[1]), fmt)
        if head == "positions" and len(rest) == 3 and rest[2] == "close":
            return self._only("PUT", request, fmt) or _with_body(
                request, fmt, partial(book.close_position, rest[1])
            )
        if rest in (["trades"], ["openTrades"]):
            return self._only("GET", request, fmt) or _json(
                *views.trades(book, open_only=head == "openTrades"), fmt
            )
        if head == "trades" and len(rest) == 2:
            return self._only("GET", request, fmt) or _json(*views.trade(book, rest[1]), fmt)
        if head == "trades" and len(rest) == 3 and rest[2] == "orders":
            return self._only("PUT", request, fmt) or _with_body(
                request, fmt, partial(book.set_trade_orders, rest[1])
            )
        if rest == ["transactions", "sinceid"]:
            return self._only("GET", request, fmt) or _json(
                *book.transactions_since(request.query.get("id", "")), fmt
            )
        if rest == ["transactions"]:
            return self._only("GET", request, fmt) or _json(
                *views.transaction_pages(book, request.query, base_url=self.base_url, fmt=fmt),
                fmt,
            )
        if rest == ["transactions", "idrange"]:
            return self._only("GET", request, fmt) or _json(
                *views.transaction_range(book, request.query), fmt
            )
        if rest == ["transactions", "stream"]:
            if wrong := self._only("GET", request, fmt):
                return wrong
            slot = StreamSlot("transactions")
            beat = self._heartbeat
            lines = transaction_lines(slot, heartbeat_s=self.heartbeat_s, heartbeat=beat, fmt=fmt)
            return self._stream(lines, slot)
        if head == "transactions" and len(rest) == 2:
            return self._only("GET", request, fmt) or _json(*book.transaction(rest[1]), fmt)
        if head == "pricing" and len(rest) <= 2:
            if wrong := self._only("GET", request, fmt):
                return wrong
            names = [n for n in request.query.get("instruments", "").split(",") if n]
            unknown = [n for n in names if n not in self.feed.instruments]
            if not names or unknown:
                return _json(
                    400, {"errorMessage": "Invalid value specified for 'instruments'"}, fmt
                )
            if rest == ["pricing"]:
                prices = [book.price(n) for n in names]
                return _json(200, {"prices": prices, "time": self.now_ns()}, fmt)
            if rest == ["pricing", "stream"]:
                slot = StreamSlot("pricing")
                lines = price_lines(
                    slot,
                    heartbeat_s=self.heartbeat_s,
                    prices=lambda: [book.price(n) for n in names],
                    heartbeat=lambda: {"type": "HEARTBEAT", "time": self.now_ns()},
                    fmt=fmt,
                )
                return self._stream(lines, slot)
        return _json(404, {"errorMessage": "No such endpoint"}, fmt)

    @staticmethod
    def _only(method: str, request: HttpRequest, fmt: DatetimeFormat) -> HttpResponse | None:
        if request.method == method:
            return None
        return _json(405, {"errorMessage": f"Method {request.method} not allowed here"}, fmt)

    def _heartbeat(self) -> dict[str, Any]:
        return {"type": "HEARTBEAT", "lastTransactionID": self.book.last_id, "time": self.now_ns()}

    def _admin(self, request: HttpRequest, parts: list[str]) -> HttpResponse:
        method = request.method
        try:
            body = msgspec.json.decode(request.body) if request.body else None
            if parts == ["state"] and method == "GET":
                return _json(200, self.state(), "RFC3339")
            if parts == ["faults"] and method == "GET":
                return _json(200, self.faults.listing(), "RFC3339")
            if parts == ["faults"] and method == "POST":
                for fault in decode_faults(body, Fault):
                    self.arm(fault)
                return _json(200, self.faults.listing(), "RFC3339")
            if parts == ["faults"] and method == "DELETE":
                self.faults.clear()
                return _json(200, {"armed": []}, "RFC3339")
            if parts == ["rate-limit"] and method == "POST":
                self.limiter.set(msgspec.convert(body or {}, RateLimits))
                return _json(200, msgspec.to_builtins(self.limiter.limits), "RFC3339")
            if parts == ["stream", "drop"] and method == "POST":
                return _json(200, {"cut": self.cut_streams()}, "RFC3339")
            if parts == ["prices"] and method == "POST":
                if not isinstance(body, dict):
                    raise ValueError('expected {"EUR_USD": "1.09000", ...}')
                for name, price in body.items():
                    self.set_price(str(name), price)
                prices = {n: self.book.price(n) for n in body}
                return _json(200, {"prices": prices}, "RFC3339")
            if parts == ["tick"] and method == "POST":
                self.tick()
                return _json(200, {"lastTransactionID": self.book.last_id}, "RFC3339")
        except (
            msgspec.DecodeError,
            msgspec.ValidationError,
            KeyError,
            ValueError,
            InvalidOperation,
        ) as exc:
            return _json(400, {"errorMessage": f"bad admin request: {exc}"}, "RFC3339")
        return _json(
            404, {"errorMessage": f"no admin endpoint {method} /_sim/{'/'.join(parts)}"}, "RFC3339"
        )

    def set_price(self, instrument: str, price: Any) -> None:
        """Pin a quote, then fill what it triggers.

        ``price`` is a mid (the usual spread around it) or ``{"bid", "ask"}``
        with an optional ``"liquidity"``: the units offered (fewer than an
        order's units fill it in part).
        """
        if instrument not in self.feed.instruments:
            raise ValueError(f"unknown instrument {instrument!r}")
        liquidity = DEFAULT_LIQUIDITY
        if isinstance(price, dict):
            bid, ask = Decimal(str(price["bid"])), Decimal(str(price["ask"]))
            liquidity = Decimal(str(price.get("liquidity", liquidity)))
        else:
            spec = self.feed.instruments[instrument]
            half = spec.point * spec.spread_points / 2
            mid = Decimal(str(price))
            bid, ask = (mid - half).quantize(spec.point), (mid + half).quantize(spec.point)
        self.feed.set_quote(instrument, bid, ask, liquidity)
        self.book.on_prices()
        self._wake_price_streams()


_REASONS = {
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def _json(
    status: int,
    body: dict[str, Any],
    fmt: DatetimeFormat,
    headers: list[tuple[str, str]] | None = None,
) -> HttpResponse:
    extra = [("RequestID", f"{time.monotonic_ns()}"), *(headers or [])]
    return HttpResponse(status, msgspec.json.encode(render(body, fmt)), extra)


def _with_body(
    request: HttpRequest, fmt: DatetimeFormat, apply: Callable[[Any], Reply]
) -> HttpResponse:
    """``apply`` to the request's JSON body (``None`` if empty); 400 if it is not JSON."""
    try:
        payload = msgspec.json.decode(request.body) if request.body else None
    except msgspec.DecodeError:
        return _json(400, {"errorMessage": "Invalid JSON in the request body"}, fmt)
    return _json(*apply(payload), fmt)


_ADMIN_HELP = """\
admin endpoints (same port, no token; the Alpaca simulator's fault vocabulary):
  POST   /_sim/faults       arm {"kind": K, "count": N, "method": M, "path": PREFIX, ...} or a list
                            K: drop | status (status) | rate_limit (retry_after_s,
                            retry_after_header) | slow (delay_s) | lose_reply | garble_reply |
                            stream_drop (after_events) | stream_refuse | stream_mute | silent |
                            heartbeat_stop | drop_events (events, probability)
  GET    /_sim/faults       armed faults        DELETE /_sim/faults   disarm all
  POST   /_sim/rate-limit   {"per_second": 100, "new_connections_per_second": 2} (0: no limit)
  POST   /_sim/stream/drop  cut every open stream now
  POST   /_sim/prices       {"EUR_USD": "1.09000"} or {"EUR_USD": {"bid": ..., "ask": ...}}
                            (optional "liquidity": units offered; fewer fill orders in part)
  POST   /_sim/tick         one step of the price walk
  GET    /_sim/state        counters, armed and fired faults
example: curl -X POST 127.0.0.1:8620/_sim/faults -d '{"kind": "status", "status": 503}'
"""


def main(argv: list[str]) -> int:
    """``ult sim oanda [--port PORT] ...``: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="ult sim oanda",
        description="Loopback simulator of OANDA's v20 REST and stream API.",
        epilog=_ADMIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port on 127.0.0.1 (0: any)"
    )
    parser.add_argument(
        "--token", help="accepted API token (default: $OANDA_API_TOKEN, else ult-sim-token)"
    )
    parser.add_argument(
        "--account", help="account id (default: $OANDA_ACCOUNT_ID, else a made-up one)"
    )
    parser.add_argument("--seed", type=int, default=1, help="price walk seed")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="stream heartbeat seconds")
    parser.add_argument(
        "--tick", type=float, default=1.0, help="seconds between price steps (0: frozen)"
    )
    parser.add_argument("--balance", default="100000", help="opening balance in USD")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=0,
        metavar="N",
        help="requests per second on one connection, 429 beyond (OANDA: 100; default 0: none)",
    )
    parser.add_argument(
        "--connection-limit",
        type=int,
        default=0,
        metavar="N",
        help="new connections per second, 429 and closed beyond (OANDA: 2; default 0: none)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='arm a fault at start, e.g. \'{"kind": "slow", "delay_s": 3}\' (repeatable)',
    )
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("OANDA_API_TOKEN") or DEFAULT_TOKEN
    token_source = (
        "--token"
        if args.token
        else "OANDA_API_TOKEN"
        if os.environ.get("OANDA_API_TOKEN")
        else None
    )
    try:
        balance = Decimal(args.balance)
    except InvalidOperation:
        parser.error(f"--balance: not a number: {args.balance!r}")
    try:
        limits = RateLimits(
            per_second=args.rate_limit, new_connections_per_second=args.connection_limit
        )
    except ValueError as exc:
        parser.error(str(exc))
    sim = OandaSimulator(
        token=token,
        account_id=args.account or os.environ.get("OANDA_ACCOUNT_ID") or DEFAULT_ACCOUNT,
        seed=args.seed,
        heartbeat_s=args.heartbeat,
        tick_s=args.tick,
        balance=balance,
        rate_limits=limits,
    )
    for spec in args.fault:
        try:
            sim.arm(msgspec.json.decode(spec, type=Fault))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            parser.error(f"--fault {spec!r}: {exc}")

    failure: list[OSError] = []

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            try:
                port = await nursery.start(sim.serve, args.port)
            except OSError as exc:  # the port is taken or not ours to use
                failure.append(exc)
                return
            # The token itself is never printed unless it is the public default.
            accepted = (
                f"the token in {token_source}" if token_source else f"token {DEFAULT_TOKEN!r}"
            )
            print(
                f"OANDA simulator on http://127.0.0.1:{port} (REST and streams), account"
                f" {sim.account_id}, accepting {accepted}\n"
                f"  export OANDA_BASE_URL=http://127.0.0.1:{port} OANDA_ACCOUNT_ID={sim.account_id}",
                flush=True,
            )

    try:
        trio.run(run)
    except* KeyboardInterrupt:
        pass  # Ctrl-C is how the simulator is meant to stop
    if failure:
        reason = failure[0].strerror or str(failure[0])
        print(f"ult sim oanda: cannot listen on 127.0.0.1:{args.port}: {reason}", file=sys.stderr)
        return 1
    return 0
