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
- ``POST /accounts/{id}/orders`` (MARKET, LIMIT, STOP, MARKET_IF_TOUCHED;
  400 with ``orderRejectTransaction``/``errorMessage`` when malformed),
  ``GET .../orders``, ``.../pendingOrders``, ``.../orders/{id or @clientID}``,
  ``PUT .../orders/{specifier}/cancel``
- ``GET .../positions``, ``.../openPositions``, ``.../positions/{instrument}``,
  ``.../trades``, ``.../openTrades``
- ``GET .../transactions/sinceid?id=N``, ``.../transactions/{id}``,
  ``.../transactions/stream`` (JSON lines, ``HEARTBEAT`` every
  ``--heartbeat`` seconds, default 5)
- ``GET .../pricing?instruments=A,B`` and ``.../pricing/stream?instruments=A,B``

Prices are a seeded random walk (``--seed``), one step every ``--tick``
seconds; resting orders fill when the walk reaches them.

Admin endpoints (no token; for tests and chaos scripts on this host):

- ``GET /_sim/faults`` — the current fault plan.
- ``POST /_sim/faults`` — body like
  ``{"rules": [{"action": "status", "status": 503, "count": 2, "method": "POST",
  "path": "/orders"}], "heartbeats": false, "silent": false,
  "drop_streams": false, "clear": false}``. Actions: ``drop`` (close without
  reply, not applied), ``status`` (reply that status, not applied; 429 carries
  ``Retry-After: retry_after_s``), ``delay`` (``delay_s`` then serve),
  ``reply_lost`` (apply, then close without reply). ``count`` 0 means until
  cleared; ``method``/``path`` (substring) narrow a rule. ``heartbeats: false``
  stops stream heartbeats; ``silent: true`` stops every stream line;
  ``drop_streams: true`` cuts open streams now; ``clear: true`` resets first.
- ``DELETE /_sim/faults`` — clear every fault.
- ``POST /_sim/price`` — ``{"instrument": "EUR_USD", "bid": "1.1", "ask": "1.1002"}``
  pins a quote and fills/expires what it triggers.
- ``POST /_sim/tick`` — one step of the price walk now.

Example: ``curl -X POST localhost:PORT/_sim/faults -d '{"rules":[{"action":"status","status":429,"retry_after_s":1}]}'``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote

import msgspec
import trio

from ult_actors.sim.oanda_book import OandaBook, Transaction
from ult_actors.sim.oanda_faults import FaultRule, Faults, FaultUpdate
from ult_actors.sim.oanda_http import (
    DropConnection,
    HttpRequest,
    HttpResponse,
    StreamResponse,
    bound_port,
    serve_listeners,
)
from ult_actors.sim.oanda_prices import PriceFeed
from ult_actors.sim.oanda_wire import DatetimeFormat, datetime_format, render

DEFAULT_TOKEN = "ult-sim-token"
DEFAULT_ACCOUNT = "101-001-1000001-001"
DEFAULT_PORT = 8620
#: OANDA's body for a missing or wrong token.
UNAUTHORIZED_BODY = {"errorMessage": "Insufficient authorization to perform request."}
FORBIDDEN_BODY = {"errorMessage": "The provided request was forbidden."}
_STREAM_BUFFER = 1024

__all__ = ["DEFAULT_ACCOUNT", "DEFAULT_TOKEN", "FaultRule", "OandaSimulator", "main"]


class OandaSimulator:
    """One simulated account behind a v20-shaped HTTP server on 127.0.0.1.

    Start it in a nursery: ``port = await nursery.start(sim.serve)``. Tests
    steer it through ``faults``, ``feed`` and ``book`` directly; other
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
    ) -> None:
        self._token = token
        self.account_id = account_id
        self.now_ns = now_ns
        self.heartbeat_s = heartbeat_s
        self.tick_s = tick_s
        self.feed = PriceFeed(seed)
        self.book = OandaBook(account_id, feed=self.feed, now_ns=now_ns, balance=balance)
        self.faults = Faults()
        self.port: int | None = None
        #: Requests that reached the v20 routes (faulted ones included).
        self.requests = 0
        self._streams: set[trio.MemorySendChannel[Transaction]] = set()
        self._price_streams: set[trio.Event] = set()
        self._drops = 0  # bumped by drop_streams; price streams compare it
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
            nursery.start_soon(serve_listeners, self.handle, listeners)
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

    # -- streams --------------------------------------------------------------

    def _publish(self, txn: Transaction) -> None:
        for channel in list(self._streams):
            try:
                channel.send_nowait(txn)
            except trio.WouldBlock:
                channel.close()  # a reader this far behind is cut, as OANDA would
                self._streams.discard(channel)

    def drop_streams(self) -> None:
        """Cut every open stream now."""
        for channel in list(self._streams):
            channel.close()
        self._streams.clear()
        self._drops += 1
        for event in list(self._price_streams):
            event.set()

    def _wake_price_streams(self) -> None:
        for event in list(self._price_streams):
            event.set()

    async def _transaction_lines(self, fmt: DatetimeFormat) -> AsyncIterator[bytes]:
        send, receive = trio.open_memory_channel[Transaction](_STREAM_BUFFER)
        self._streams.add(send)
        try:
            next_beat = trio.current_time() + self.heartbeat_s
            while True:
                txn: Transaction | None = None
                with trio.move_on_at(next_beat):
                    try:
                        txn = await receive.receive()
                    except trio.EndOfChannel:
                        raise DropConnection from None
                if txn is None:
                    next_beat += self.heartbeat_s
                    if self.faults.heartbeats and not self.faults.silent:
                        beat = {
                            "type": "HEARTBEAT",
                            "lastTransactionID": self.book.last_id,
                            "time": self.now_ns(),
                        }
                        yield _line(beat, fmt)
                elif not self.faults.silent:
                    yield _line(txn, fmt)
        finally:
            self._streams.discard(send)

    async def _price_lines(
        self, instruments: list[str], fmt: DatetimeFormat
    ) -> AsyncIterator[bytes]:
        drops = self._drops
        for name in instruments:
            yield _line(self.book.price(name), fmt)
        next_beat = trio.current_time() + self.heartbeat_s
        while True:
            wake = trio.Event()
            self._price_streams.add(wake)
            try:
                with trio.move_on_at(next_beat):
                    await wake.wait()
            finally:
                self._price_streams.discard(wake)
            if self._drops != drops:
                raise DropConnection
            if wake.is_set():
                if self.faults.silent:
                    continue
                for name in instruments:
                    yield _line(self.book.price(name), fmt)
            else:
                next_beat += self.heartbeat_s
                if self.faults.heartbeats and not self.faults.silent:
                    yield _line({"type": "HEARTBEAT", "time": self.now_ns()}, fmt)

    # -- requests -------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpResponse | StreamResponse:
        """Route one request (the HTTP server calls this)."""
        parts = [unquote(p) for p in request.raw_path.split("/") if p]
        if parts[:1] == ["_sim"]:
            return self._admin(request, parts[1:])
        self.requests += 1
        rule = self.faults.take(request.method, request.raw_path)
        if rule is not None:
            if rule.action == "drop":
                raise DropConnection
            if rule.action == "delay":
                await trio.sleep(rule.delay_s)
            elif rule.action == "status":
                headers = []
                if rule.retry_after_s is not None:
                    headers.append(("Retry-After", f"{math.ceil(rule.retry_after_s)}"))
                message = "Rate limit exceeded" if rule.status == 429 else "Service unavailable"
                return _json(rule.status, {"errorMessage": message}, "RFC3339", headers)
        fmt = datetime_format(request.headers)
        if request.headers.get("authorization") != f"Bearer {self._token}":
            return _json(401, UNAUTHORIZED_BODY, fmt)
        reply = self._v20(request, parts, fmt)
        if rule is not None and rule.action == "reply_lost":
            raise DropConnection
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
            account = book.summary()
            account.update(
                orders=[book.order_wire(o) for o in book.orders.values() if o.state == "PENDING"],
                positions=book.positions(open_only=False)[1]["positions"],
                trades=book.trades_wire(open_only=True)[1]["trades"],
            )
            return _json(200, {"account": account, "lastTransactionID": book.last_id}, fmt)
        head = rest[0]
        if rest == ["summary"]:
            return self._only("GET", request, fmt) or _json(
                200, {"account": book.summary(), "lastTransactionID": book.last_id}, fmt
            )
        if rest == ["instruments"]:
            return self._only("GET", request, fmt) or _json(
                200,
                {"instruments": book.instruments_wire(), "lastTransactionID": book.last_id},
                fmt,
            )
        if rest == ["orders"]:
            if method == "POST":
                try:
                    payload = msgspec.json.decode(request.body) if request.body else None
                except msgspec.DecodeError:
                    return _json(400, {"errorMessage": "Invalid JSON in the request body"}, fmt)
                return _json(*book.create_order(payload), fmt)
            return self._only("GET", request, fmt) or _json(*book.list_orders(request.query), fmt)
        if rest == ["pendingOrders"]:
            return self._only("GET", request, fmt) or _json(
                *book.list_orders({}, pending_only=True), fmt
            )
        if head == "orders" and len(rest) == 2:
            return self._only("GET", request, fmt) or _json(*book.get_order(rest[1]), fmt)
        if head == "orders" and len(rest) == 3 and rest[2] == "cancel":
            return self._only("PUT", request, fmt) or _json(*book.cancel_order(rest[1]), fmt)
        if rest in (["positions"], ["openPositions"]):
            return self._only("GET", request, fmt) or _json(
                *book.positions(open_only=head == "openPositions"), fmt
            )
        if head == "positions" and len(rest) == 2:
            return self._only("GET", request, fmt) or _json(*book.position(rest[1]), fmt)
        if rest in (["trades"], ["openTrades"]):
            return self._only("GET", request, fmt) or _json(
                *book.trades_wire(open_only=head == "openTrades"), fmt
            )
        if rest == ["transactions", "sinceid"]:
            return self._only("GET", request, fmt) or _json(
                *book.transactions_since(request.query.get("id", "")), fmt
            )
        if rest == ["transactions", "stream"]:
            return self._only("GET", request, fmt) or StreamResponse(
                200, self._transaction_lines(fmt), content_type="application/octet-stream"
            )
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
                return StreamResponse(200, self._price_lines(names, fmt))
        return _json(404, {"errorMessage": "No such endpoint"}, fmt)

    @staticmethod
    def _only(method: str, request: HttpRequest, fmt: DatetimeFormat) -> HttpResponse | None:
        if request.method == method:
            return None
        return _json(405, {"errorMessage": f"Method {request.method} not allowed here"}, fmt)

    def _admin(self, request: HttpRequest, parts: list[str]) -> HttpResponse:
        try:
            if parts == ["faults"]:
                if request.method == "GET":
                    return _json(200, self.faults.snapshot(), "RFC3339")
                if request.method == "DELETE":
                    self.faults.clear()
                    return _json(200, self.faults.snapshot(), "RFC3339")
                if request.method == "POST":
                    update = msgspec.json.decode(request.body or b"{}", type=FaultUpdate)
                    self.apply_faults(update)
                    return _json(200, self.faults.snapshot(), "RFC3339")
            if parts == ["price"] and request.method == "POST":
                body = msgspec.json.decode(request.body, type=dict[str, str])
                self.feed.set_quote(body["instrument"], Decimal(body["bid"]), Decimal(body["ask"]))
                self.book.on_prices()
                self._wake_price_streams()
                return _json(200, self.book.price(body["instrument"]), "RFC3339")
            if parts == ["tick"] and request.method == "POST":
                self.tick()
                return _json(200, {"lastTransactionID": self.book.last_id}, "RFC3339")
        except (msgspec.DecodeError, KeyError, ValueError, InvalidOperation) as exc:
            return _json(400, {"errorMessage": f"bad admin request: {exc}"}, "RFC3339")
        return _json(404, {"errorMessage": "No such admin endpoint"}, "RFC3339")

    def apply_faults(self, update: FaultUpdate) -> None:
        """Apply a fault update (what ``POST /_sim/faults`` does)."""
        if update.clear:
            self.faults.clear()
        for rule in update.rules:
            self.faults.add(rule)
        if update.heartbeats is not None:
            self.faults.heartbeats = update.heartbeats
        if update.silent is not None:
            self.faults.silent = update.silent
        if update.drop_streams:
            self.drop_streams()


def _line(obj: dict[str, Any], fmt: DatetimeFormat) -> bytes:
    return msgspec.json.encode(render(obj, fmt)) + b"\n"


def _json(
    status: int,
    body: dict[str, Any],
    fmt: DatetimeFormat,
    headers: list[tuple[str, str]] | None = None,
) -> HttpResponse:
    extra = [("RequestID", f"{time.monotonic_ns()}"), *(headers or [])]
    return HttpResponse(status, msgspec.json.encode(render(body, fmt)), extra)


def main(argv: list[str]) -> int:
    """``ult sim oanda [--port PORT] ...``: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="ult sim oanda", description="Loopback simulator of OANDA's v20 REST and stream API."
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
    sim = OandaSimulator(
        token=token,
        account_id=args.account or os.environ.get("OANDA_ACCOUNT_ID") or DEFAULT_ACCOUNT,
        seed=args.seed,
        heartbeat_s=args.heartbeat,
        tick_s=args.tick,
        balance=balance,
    )

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
