"""``ult sim alpaca``: a loopback Alpaca Trading API v2 + ``trade_updates`` server.

Any Alpaca client (alpaca-py included) can be pointed at it: REST under ``/v2/...`` and the
trade-updates WebSocket at ``/stream`` on the same port, with Alpaca's
paths, JSON shapes and error bodies (401/403 for bad keys, 403 for
insufficient buying power or shares, 404, 422 for malformed orders or a
reused ``client_order_id``). Orders fill over time and every step is
published on the stream; every execution is also a FILL activity
(``GET /v2/account/activities/FILL``, see ``activities``). Alpaca's rate
limit (requests per minute, 429 and ``X-RateLimit-*`` headers) is off
unless set (``--rate-limit``, ``POST /_sim/rate-limit``). What is simulated and what is not is in
``venue`` (cash account, no shorting; replace and bracket / oco / oto orders).

Run it::

    ult sim alpaca --port 8765              # keys from ALPACA_API_KEY / ALPACA_API_SECRET
    ALPACA_API_KEY=k ALPACA_API_SECRET=s \\
    ALPACA_BASE_URL=http://127.0.0.1:8765 ult serve   # the gateway, pointed at it

With no keys given (flags or environment) it accepts any non-empty pair.

Fault switches (fields: ``sim/faults.py``; kinds: ``sim/alpaca/faults.py``): arm them at start with
``--fault JSON`` (repeatable), or at any time from another process through
the admin endpoints on the same port (no credentials needed; loopback only)::

    POST   /_sim/faults        body: a fault or a list of faults, e.g.
                               {"kind": "status", "status": 503, "count": 2, "path": "/v2/orders"}
                               {"kind": "rate_limit", "retry_after_s": 3}
                               {"kind": "lose_reply", "method": "POST", "path": "/v2/orders"}
                               {"kind": "garble_reply", "method": "POST", "path": "/v2/orders"}
                               {"kind": "slow", "delay_s": 5}
                               {"kind": "drop"}
                               {"kind": "stream_drop", "after_events": 2}
                               {"kind": "stream_refuse", "count": 3}
                               {"kind": "silent"}  (also "stream_mute")
                               {"kind": "drop_events", "count": 3, "events": ["fill"],
                                "probability": 0.5}
    DELETE /_sim/faults        disarm everything
    POST   /_sim/stream/drop   cut every trade_updates connection now
    POST   /_sim/rate-limit    {"per_minute": 200}: Alpaca's 429 beyond it (0: no limit)
    POST   /_sim/prices        {"AAPL": "191.20"}: move prices (resting orders may fill)
    POST   /_sim/market        {"is_open": false}: close or open the market
    POST   /_sim/close-day     close the market; open day orders expire
    GET    /_sim/state         counters, armed faults, fired faults, stream clients

For example: ``curl -X POST localhost:8765/_sim/faults -d '{"kind":"drop","count":3}'``.

In tests, build an ``AlpacaSim`` with ``make_alpaca_sim`` and run
``serve_alpaca_sim`` in a nursery (``port=0``; ``nursery.start`` returns the
bound port); flip faults with ``sim.arm(Fault(...))``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

import msgspec
import trio

from ult_actors.secrets import Secret
from ult_actors.sim.alpaca.activities import KNOWN_TYPES
from ult_actors.sim.alpaca.checks import ApiError
from ult_actors.sim.alpaca.faults import API_PREFIX, SILENCING, Fault
from ult_actors.sim.alpaca.venue import OPEN, AlpacaVenue, is_true
from ult_actors.sim.faults import FaultBoard, FaultSpec, decode_faults, garbled
from ult_actors.sim.http import (
    UPGRADE,
    DropConnection,
    HttpRequest,
    HttpResponse,
    ReplyStyle,
    Upgrade,
    WsChannel,
    json_response,
    serve_http,
)

DEFAULT_PORT = 8765
STREAM_PATH = "/stream"
_AUTH_TIMEOUT_S = 10.0
_SESSION_QUEUE = 1000
#: What the HTTP server answers on its own, in Alpaca's error shape.
_REPLY_STYLE = ReplyStyle(
    too_large=json_response(413, {"message": "request body too large"}),
    malformed=json_response(400, {"message": "malformed request"}),
)


class _StreamSession:
    """One trade_updates connection: a queue of outgoing messages in order."""

    def __init__(self, channel: WsChannel) -> None:
        self.channel = channel
        self.send, self.receive = trio.open_memory_channel[dict[str, Any]](_SESSION_QUEUE)
        self.listening = False
        self.cut = False
        self.muted = False

    def offer(self, message: dict[str, Any]) -> None:
        if self.cut:
            return
        try:
            self.send.send_nowait(message)
        except trio.WouldBlock:
            self.close_queue()  # a reader this far behind is cut, as a real server would

    def close_queue(self) -> None:
        """No more messages: the writer sends what is queued, then cuts the connection."""
        self.cut = True
        self.send.close()


class _RateWindow:
    """Alpaca's per-minute request budget (off when ``limit`` is 0)."""

    def __init__(self, limit: int, now_ns: Callable[[], int]) -> None:
        #: Requests per minute; 0: no limit (and no ``X-RateLimit-*`` headers).
        self.limit = limit
        self._now_ns = now_ns
        self._window = -1
        self._used = 0

    def take(self) -> tuple[bool, list[tuple[str, str]]]:
        """(allowed?, the X-RateLimit-* headers for the reply)."""
        if not self.limit:
            return True, []
        minute = self._now_ns() // 60_000_000_000
        if minute != self._window:
            self._window, self._used = minute, 0
        allowed = self._used < self.limit
        self._used += allowed
        headers = [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.limit - self._used)),
            ("X-RateLimit-Reset", str((minute + 1) * 60)),
        ]
        return allowed, headers


class AlpacaSim:
    """The simulator's request and stream handling over one ``AlpacaVenue``."""

    def __init__(
        self,
        venue: AlpacaVenue,
        *,
        key: Secret,
        secret: Secret,
        faults: FaultBoard | None = None,
        rate_limit_per_minute: int = 0,
        seed: int = 0,
    ) -> None:
        self.venue = venue
        self.faults = faults or FaultBoard(API_PREFIX)
        self._key = key
        self._secret = secret
        self._rate = _RateWindow(rate_limit_per_minute, venue.now_ns)
        #: Requests answered 429 because the per-minute limit was used up (not faults).
        self.rate_limited = 0
        self._sessions: set[_StreamSession] = set()
        self._listening_changed = trio.Event()
        #: Draws for ``drop_events`` (its own, so ids do not depend on what was dropped).
        self._drop_rng = random.Random(seed)
        #: Trade updates a ``drop_events`` fault kept from every listener.
        self.events_dropped = 0
        #: Requests to /v2 and /stream seen (including faulted ones).
        self.requests = 0
        #: Stream sessions that have ever reached ``listening``.
        self.listens = 0
        venue.publish = self._publish

    # -- in-process control (tests) -----------------------------------------

    def arm(self, fault: Fault) -> None:
        """Arm a fault; a ``stream_drop`` with ``after_events=0`` cuts the streams at once."""
        self.faults.arm(fault)
        if fault.kind == "stream_drop" and fault.after_events == 0 and self.faults.cut_now():
            self.cut_streams()
        if fault.kind in SILENCING:
            while self.faults.take(fault.kind):
                self.mute_streams()

    def cut_streams(self) -> int:
        """Cut every stream connection; nothing published from now on reaches them."""
        sessions = list(self._sessions)
        for session in sessions:
            session.close_queue()
        self._sessions.clear()
        return len(sessions)

    def set_rate_limit(self, per_minute: int) -> None:
        """Requests per minute before Alpaca's 429 (0: no limit); the window starts afresh."""
        if per_minute < 0:
            raise ValueError("per_minute must not be negative")
        self._rate = _RateWindow(per_minute, self.venue.now_ns)

    def mute_streams(self) -> int:
        """Silence every stream connection: open, but no events and no pongs."""
        sessions = list(self._sessions)
        for session in sessions:
            session.muted = True
            session.channel.answer_pings = False
        return len(sessions)

    async def wait_listening(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` stream sessions in total have started listening."""
        with trio.fail_after(timeout):
            while self.listens < count:
                await self._listening_changed.wait()

    def state(self) -> dict[str, Any]:
        """Counters for ``GET /_sim/state``."""
        stats = self.venue.stats
        return {
            "requests": self.requests,
            "submits": stats.submits,
            "orders": stats.orders_created,
            "open_orders": sum(1 for o in self.venue.orders.values() if o.status in OPEN),
            "fills": stats.fills,
            "events_published": stats.events_published,
            "events_dropped": self.events_dropped,
            "rate_limit_per_minute": self._rate.limit,
            "rate_limited": self.rate_limited,
            "stream_clients": len(self._sessions),
            "stream_listens": self.listens,
            "market_open": self.venue.market_open,
            **self.faults.report(),
        }

    # -- HTTP ---------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpResponse | Upgrade:
        """Answer one request (the ``serve_http`` handler; ``DropConnection`` cuts it)."""
        if request.path.startswith("/_sim/"):
            return self._admin(request)
        self.requests += 1
        if request.path == STREAM_PATH:
            if self.faults.take("stream_refuse"):
                return json_response(503, {"message": "service unavailable"})
            if not request.wants_websocket:
                return json_response(400, {"message": "expected a WebSocket upgrade"})
            return UPGRADE
        fault = self.faults.take_request_fault(request.method, request.path)
        if fault is not None:
            if fault.kind == "drop":
                raise DropConnection
            if fault.kind == "status":
                return _error_page(fault.status)
            if fault.kind == "rate_limit":
                return self._rate_limited(fault)
            if fault.kind == "slow":
                await trio.sleep(fault.delay_s)
        denied = self._authenticate(request.headers)
        if denied is not None:
            return denied
        allowed, limit_headers = self._rate.take()
        if not allowed:
            self.rate_limited += 1
            return json_response(
                429, {"code": 42910000, "message": "rate limit exceeded"}, limit_headers
            )
        try:
            reply = self._route(request)
        except ApiError as exc:
            reply = json_response(exc.status, exc.body)
        if fault is not None and fault.kind == "lose_reply":
            raise DropConnection  # applied, but the client never hears of it
        if fault is not None and fault.kind == "garble_reply":
            reply.body = garbled(reply.body)  # applied, but the answer cannot be read
        reply.headers.extend(limit_headers)
        return reply

    def _authenticate(self, headers: dict[str, str]) -> HttpResponse | None:
        key = headers.get("apca-api-key-id", "")
        secret = headers.get("apca-api-secret-key", "")
        if not key or not secret:
            return json_response(403, {"message": "forbidden."})
        if not self._credentials_ok(key, secret):
            return json_response(401, {"code": 40110000, "message": "request is not authorized"})
        return None

    def _credentials_ok(self, key: str, secret: str) -> bool:
        if not self._key and not self._secret:
            return bool(key and secret)  # no keys configured: any non-empty pair
        return hmac.compare_digest(key.encode(), self._key.reveal().encode()) & hmac.compare_digest(
            secret.encode(), self._secret.reveal().encode()
        )

    def _rate_limited(self, fault: FaultSpec) -> HttpResponse:
        now_s = self.venue.now_ns() / 1e9
        reset = int(now_s + fault.retry_after_s) + (1 if fault.retry_after_s % 1 else 0)
        headers = [
            ("X-RateLimit-Limit", "200"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", str(reset)),
        ]
        if fault.retry_after_header:
            headers.append(("Retry-After", f"{fault.retry_after_s:g}"))
        return json_response(429, {"code": 42910000, "message": "rate limit exceeded"}, headers)

    def _route(self, request: HttpRequest) -> HttpResponse:
        venue = self.venue
        method, path = request.method, request.path
        if path == "/v2/account":
            return _only(method, "GET") or json_response(200, venue.account_json())
        if path == "/v2/clock":
            return _only(method, "GET") or json_response(200, venue.clock_json())
        if path == "/v2/positions":
            if method == "DELETE":
                cancel = request.query.get("cancel_orders", "false").lower() == "true"
                return json_response(207, venue.close_all(cancel_orders=cancel))
            return _only(method, "GET") or json_response(200, venue.positions_json())
        if path.startswith("/v2/positions/"):
            symbol = path.removeprefix("/v2/positions/")
            if method == "DELETE":
                return json_response(200, venue.close_position(symbol, request.query).to_json())
            return _only(method, "GET") or json_response(200, venue.position_json(symbol))
        if path == "/v2/account/activities":
            kinds = request.query.get("activity_types") or ",".join(sorted(KNOWN_TYPES))
            return _only(method, "GET") or json_response(
                200, venue.activities.page(kinds, request.query)
            )
        if path.startswith("/v2/account/activities/"):
            kind = path.removeprefix("/v2/account/activities/")
            return _only(method, "GET") or json_response(
                200, venue.activities.page(kind, request.query)
            )
        if path.startswith("/v2/stocks/") and path.endswith("/quotes/latest"):
            symbol = path.removeprefix("/v2/stocks/").removesuffix("/quotes/latest")
            return _only(method, "GET") or json_response(200, venue.latest_quote(symbol))
        if path.startswith("/v2/assets/"):
            symbol = path.removeprefix("/v2/assets/")
            return _only(method, "GET") or json_response(200, venue.asset_json(symbol))
        nested = is_true(request.query.get("nested"))
        if path == "/v2/orders":
            if method == "GET":
                listed = venue.list_orders(request.query)
                return json_response(200, [venue.order_json(o, nested=nested) for o in listed])
            if method == "POST":
                return json_response(200, venue.order_json(venue.submit(_body(request))))
            if method == "DELETE":
                return json_response(207, venue.cancel_all())
            return _method_not_allowed()
        if path == "/v2/orders:by_client_order_id":
            coid = request.query.get("client_order_id", "")
            if not coid:
                raise ApiError(422, 40010000, "client_order_id is required")
            return _only(method, "GET") or json_response(
                200, venue.get_by_client_id(coid).to_json()
            )
        if path.startswith("/v2/orders/"):
            order_id = path.removeprefix("/v2/orders/")
            if method == "GET":
                return json_response(200, venue.order_json(venue.get(order_id), nested=nested))
            if method == "PATCH":
                return json_response(200, venue.replace(order_id, _body(request)).to_json())
            if method == "DELETE":
                venue.cancel(order_id)
                return HttpResponse(204)
            return _method_not_allowed()
        return json_response(404, {"code": 40410000, "message": "endpoint not found"})

    # -- admin (other processes: the chaos script) ---------------------------

    def _admin(self, request: HttpRequest) -> HttpResponse:
        method, path = request.method, request.path
        try:
            body = request.json() if request.body else None
        except ValueError:
            return json_response(400, {"message": "body is not JSON"})
        if path == "/_sim/state" and method == "GET":
            return json_response(200, self.state())
        if path == "/_sim/faults" and method == "POST":
            try:
                for fault in decode_faults(body, Fault):
                    self.arm(fault)
            except (msgspec.ValidationError, ValueError) as exc:
                return json_response(400, {"message": f"bad fault: {exc}"})
            return json_response(200, self.faults.listing())
        if path == "/_sim/faults" and method == "DELETE":
            self.faults.clear()
            return json_response(200, {"armed": []})
        if path == "/_sim/rate-limit" and method == "POST":
            per_minute = body.get("per_minute") if isinstance(body, dict) else None
            if not isinstance(per_minute, int) or isinstance(per_minute, bool) or per_minute < 0:
                return json_response(400, {"message": 'expected {"per_minute": N} (0: no limit)'})
            self.set_rate_limit(per_minute)
            return json_response(200, {"per_minute": per_minute})
        if path == "/_sim/stream/drop" and method == "POST":
            return json_response(200, {"cut": self.cut_streams()})
        if path == "/_sim/prices" and method == "POST":
            if not isinstance(body, dict):
                return json_response(400, {"message": 'expected {"SYMBOL": "price", ...}'})
            try:
                for symbol, price in body.items():
                    self.venue.set_price(str(symbol), Decimal(str(price)))
            except (InvalidOperation, ValueError) as exc:
                return json_response(400, {"message": f"bad price: {exc}"})
            prices = {s: format(p, "f") for s, p in self.venue.prices.items()}
            return json_response(200, {"prices": prices})
        if path == "/_sim/close-day" and method == "POST":
            return json_response(200, {"expired": self.venue.close_day()})
        if path == "/_sim/market" and method == "POST":
            if not isinstance(body, dict) or not isinstance(body.get("is_open"), bool):
                return json_response(400, {"message": 'expected {"is_open": true|false}'})
            self.venue.set_market_open(body["is_open"])
            return json_response(200, self.venue.clock_json())
        return json_response(404, {"message": f"no admin endpoint {method} {path}"})

    # -- the trade_updates stream -------------------------------------------

    def _publish(self, message: dict[str, Any]) -> None:
        if self._dropped(message):
            return
        for session in list(self._sessions):
            if session.listening and not session.muted:
                session.offer(message)
        if self.faults.stream_cut_due():
            self.cut_streams()

    def _dropped(self, message: dict[str, Any]) -> bool:
        """Whether an armed ``drop_events`` fault keeps this update from every listener."""
        event = message["data"]["event"]
        for fault in self.faults.armed():
            if fault.kind != "drop_events":
                continue
            assert isinstance(fault, Fault)
            if fault.events and event not in fault.events:
                return False
            if self._drop_rng.random() >= fault.probability:
                return False
            self.faults.take("drop_events")
            self.events_dropped += 1
            return True
        return False

    async def stream(self, channel: WsChannel) -> None:
        """Serve one trade_updates connection: authenticate, listen, then events."""
        session = _StreamSession(channel)
        self._sessions.add(session)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_stream, session)
                await self._read_stream(session)
                # Let the writer send what is queued (an "unauthorized" reply), briefly.
                session.close_queue()
                nursery.cancel_scope.deadline = trio.current_time() + 2.0
        finally:
            self._sessions.discard(session)
            with trio.CancelScope(shield=True):
                await channel.abort()

    async def _read_stream(self, session: _StreamSession) -> None:
        authorized = False
        deadline = trio.current_time() + _AUTH_TIMEOUT_S
        while not session.cut:
            with trio.move_on_at(deadline if not authorized else float("inf")):
                raw = await session.channel.receive()
                if raw is None:
                    return
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                action, data = message.get("action"), message.get("data") or {}
                if action == "authenticate":
                    authorized = self._credentials_ok(
                        str(data.get("key_id", "")), str(data.get("secret_key", ""))
                    )
                    status = "authorized" if authorized else "unauthorized"
                    session.offer(_authorization("authenticate", status))
                    if not authorized:
                        session.close_queue()
                        return
                elif action == "listen":
                    if not authorized:
                        session.offer(_authorization("listen", "unauthorized"))
                        continue
                    wanted = data.get("streams") or []
                    streams = [s for s in wanted if s == "trade_updates"]
                    session.offer({"stream": "listening", "data": {"streams": streams}})
                    if streams and not session.listening:
                        self.listens += 1
                        self._listening_changed.set()
                        self._listening_changed = trio.Event()
                    session.listening = bool(streams)
                continue
            return  # no authenticate in time

    async def _write_stream(self, session: _StreamSession) -> None:
        async for message in session.receive:
            # Binary frames carrying JSON, as Alpaca's paper stream sends them.
            await session.channel.send(json.dumps(message).encode())
            if session.channel.closed:
                return
        await session.channel.abort()  # cut: no close frame, as a failed network would


def _body(request: HttpRequest) -> Any:
    try:
        return request.json()
    except ValueError:
        raise ApiError(400, 40010000, "request body format is invalid") from None


def _authorization(action: str, status: str) -> dict[str, Any]:
    return {"stream": "authorization", "data": {"action": action, "status": status}}


def _only(method: str, allowed: str) -> HttpResponse | None:
    return None if method == allowed else _method_not_allowed()


def _method_not_allowed() -> HttpResponse:
    return json_response(405, {"code": 40510000, "message": "method not allowed"})


def _error_page(status: int) -> HttpResponse:
    if status in (502, 504):
        # What a proxy in front of Alpaca sends: HTML, not JSON.
        page = f"<html><body><h1>{status} Gateway Error</h1></body></html>".encode()
        return HttpResponse(status, page, content_type="text/html")
    return json_response(
        status, {"code": status * 100000 + 10000, "message": "internal server error"}
    )


def make_alpaca_sim(
    *,
    key: str = "",
    secret: str = "",
    seed: int = 0,
    now_ns: Callable[[], int] = time.time_ns,
    rate_limit_per_minute: int = 0,
    **venue_options: Any,
) -> AlpacaSim:
    """A simulator with its own venue (``venue_options``: cash, fill_delay_s, autofill, ...)."""
    venue = AlpacaVenue(now_ns=now_ns, rng=random.Random(seed), **venue_options)
    return AlpacaSim(
        venue,
        key=Secret(key),
        secret=Secret(secret),
        rate_limit_per_minute=rate_limit_per_minute,
        seed=seed,
    )


async def serve_alpaca_sim(
    sim: AlpacaSim,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``sim`` on ``host:port`` until cancelled; ``started`` reports the bound port."""
    async with trio.open_nursery() as nursery:
        sim.venue.attach(nursery)
        bound = await nursery.start(
            partial(
                serve_http,
                sim.handle,
                style=_REPLY_STYLE,
                ws_handler=sim.stream,
                host=host,
                port=port,
            )
        )
        task_status.started(bound)


_ADMIN_HELP = """\
fault switches and admin endpoints (same port, no credentials):
  POST   /_sim/faults       arm: {"kind": K, "count": N, "method": M, "path": P, ...}
                            K: drop | status (status=503) | rate_limit (retry_after_s,
                            retry_after_header) | slow (delay_s) | lose_reply |
                            garble_reply | stream_drop (after_events) | stream_refuse |
                            silent (= stream_mute) | drop_events (events, probability)
  DELETE /_sim/faults       disarm all
  POST   /_sim/stream/drop  cut every trade_updates connection now
  POST   /_sim/rate-limit   {"per_minute": 200} (0: no limit)
  POST   /_sim/prices       {"AAPL": "191.20"}
  POST   /_sim/market       {"is_open": false}
  POST   /_sim/close-day    close the market, expire open day orders
  GET    /_sim/state        counters, armed and fired faults
example: curl -X POST 127.0.0.1:8765/_sim/faults -d '{"kind": "status", "status": 503}'
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ult sim alpaca",
        description=(
            "Loopback Alpaca Trading API v2 + trade_updates simulator, both on one port:"
            " REST under http://HOST:PORT/v2 (ALPACA_BASE_URL=http://HOST:PORT) and the"
            f" trade_updates WebSocket at ws://HOST:PORT{STREAM_PATH}"
            f" (ALPACA_STREAM_URL=ws://HOST:PORT{STREAM_PATH})."
        ),
        epilog=_ADMIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--key", default=None, help="accepted key id (default $ALPACA_API_KEY)")
    parser.add_argument(
        "--secret", default=None, help="accepted secret (default $ALPACA_API_SECRET)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for order and execution ids")
    parser.add_argument("--cash", default="100000", help="starting cash (USD)")
    parser.add_argument("--fill-delay", type=float, default=0.2, help="seconds between fills")
    parser.add_argument("--fill-slices", type=int, default=2, help="fills per marketable order")
    parser.add_argument("--market-closed", action="store_true", help="start with the market closed")
    parser.add_argument(
        "--rate-limit", type=int, default=0, help="requests per minute before 429 (0: no limit)"
    )
    parser.add_argument(
        "--fault", action="append", default=[], metavar="JSON", help="arm a fault at start"
    )
    return parser


def main(argv: list[str]) -> int:
    """Run the simulator in the foreground until Ctrl-C."""
    args = _parser().parse_args(argv)
    key = args.key if args.key is not None else os.environ.get("ALPACA_API_KEY", "")
    secret = args.secret if args.secret is not None else os.environ.get("ALPACA_API_SECRET", "")
    try:
        cash = Decimal(args.cash)
        faults = [msgspec.json.decode(spec, type=Fault) for spec in args.fault]
    except (InvalidOperation, msgspec.DecodeError, msgspec.ValidationError) as exc:
        print(f"ult sim alpaca: {exc}", file=sys.stderr)
        return 2
    sim = make_alpaca_sim(
        key=key,
        secret=secret,
        seed=args.seed,
        rate_limit_per_minute=args.rate_limit,
        cash=cash,
        fill_delay_s=args.fill_delay,
        fill_slices=args.fill_slices,
        market_open=not args.market_closed,
    )
    try:
        for fault in faults:
            sim.arm(fault)
    except ValueError as exc:
        print(f"ult sim alpaca: bad --fault: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        # Ctrl-C and SIGTERM (the chaos script stopping it) are a clean stop.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                refused: list[OSError] = []
                try:
                    port = await nursery.start(
                        partial(serve_alpaca_sim, sim, host=args.host, port=args.port)
                    )
                except* OSError as group:
                    refused.extend(e for e in group.exceptions if isinstance(e, OSError))
                if refused:
                    where = f"{args.host}:{args.port}"
                    print(
                        f"ult sim alpaca: cannot listen on {where}: {refused[0]}", file=sys.stderr
                    )
                    return 1
                keys = "the configured key pair" if key or secret else "any non-empty key pair"
                print(
                    f"alpaca simulator on http://{args.host}:{port} (stream"
                    f" ws://{args.host}:{port}{STREAM_PATH}), accepting {keys}\n"
                    f"  export ALPACA_BASE_URL=http://{args.host}:{port}\n"
                    f"  export ALPACA_STREAM_URL=ws://{args.host}:{port}{STREAM_PATH}",
                    flush=True,
                )
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()
        return 0

    return trio.run(run)
