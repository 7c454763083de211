"""A small HTTP/1.1 + WebSocket server on trio (h11 and wsproto), for the Alpaca simulator.

It does only what the simulator needs, but does it at the socket: a handler
may answer, or return ``DROP`` to close the TCP connection with no reply at
all, which is how the simulator fakes lost replies and dropped connections.
Keep-alive works as clients expect. A WebSocket upgrade request reaches the
handler like any other; if it answers ``UPGRADE`` the connection becomes a
``WsChannel`` for the WebSocket handler, otherwise the reply is refusal.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import structlog
import trio
import wsproto
import wsproto.events as ws_events

MAX_BODY = 1 << 20
_RECEIVE = 65536


@dataclass
class HttpRequest:
    """One request as the handler sees it; header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not)."""
        return json.loads(self.body or b"null")


@dataclass
class HttpResponse:
    """A complete reply."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


def json_response(
    status: int, data: Any, headers: list[tuple[str, str]] | None = None
) -> HttpResponse:
    """A JSON reply."""
    return HttpResponse(status, json.dumps(data).encode(), headers or [])


class Drop:
    """Returned by a handler: close the connection without answering."""


class Upgrade:
    """Returned by a handler for a WebSocket upgrade request: accept it."""


DROP = Drop()
UPGRADE = Upgrade()

HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse | Drop | Upgrade]]
WsHandler = Callable[["WsChannel"], Awaitable[None]]


class WsChannel:
    """A server-side WebSocket: receive messages, send from any task, close or abort."""

    def __init__(self, stream: trio.SocketStream, ws: wsproto.WSConnection) -> None:
        self._stream = stream
        self._ws = ws
        self._send_lock = trio.Lock()
        self._pending: deque[ws_events.Event] = deque()
        self._parts: list[str | bytes] = []
        self.closed = False
        #: False: pings go unanswered, as on a half-open connection.
        self.answer_pings = True

    async def receive(self) -> str | bytes | None:
        """The next whole message, or ``None`` once the peer has gone."""
        while not self.closed:
            while self._pending:
                event = self._pending.popleft()
                if isinstance(event, ws_events.Message):
                    self._parts.append(event.data)
                    if event.message_finished:
                        parts, self._parts = self._parts, []
                        if isinstance(parts[0], bytes):
                            return b"".join(p for p in parts if isinstance(p, bytes))
                        return "".join(p for p in parts if isinstance(p, str))
                elif isinstance(event, ws_events.Ping):
                    if self.answer_pings:
                        await self._send_raw(self._ws.send(event.response()))
                elif isinstance(event, ws_events.CloseConnection):
                    await self._send_raw(self._ws.send(event.response()))
                    self.closed = True
                    return None
            try:
                data = await self._stream.receive_some(_RECEIVE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.closed = True
                return None
            self._ws.receive_data(data)
            self._pending.extend(self._ws.events())
        return None

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for ``str``, binary for ``bytes``)."""
        event: ws_events.Event = (
            ws_events.BytesMessage(data=message)
            if isinstance(message, bytes)
            else ws_events.TextMessage(data=message)
        )
        await self._send_raw(self._ws.send(event))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely (a close frame, then the socket)."""
        if not self.closed:
            self.closed = True
            try:
                await self._send_raw(self._ws.send(ws_events.CloseConnection(code, reason)))
            finally:
                await self._stream.aclose()

    async def abort(self) -> None:
        """Cut the TCP connection with no close frame, as a network failure would."""
        self.closed = True
        await self._stream.aclose()

    async def _send_raw(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.closed = True


async def serve_http(
    handler: HttpHandler,
    ws_handler: WsHandler,
    *,
    ws_path: str,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``started`` reports the bound port (``port=0`` picks one)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log = structlog.get_logger().bind(component="sim.http", port=bound)

    async def connection(stream: trio.SocketStream) -> None:
        try:
            await _serve_connection(stream, handler, ws_handler, ws_path)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as exc:  # one bad connection must not stop the server
            log.warning("sim connection failed", error=repr(exc))
        finally:
            await trio.aclose_forcefully(stream)

    task_status.started(bound)
    await trio.serve_listeners(connection, listeners)


async def _serve_connection(
    stream: trio.SocketStream, handler: HttpHandler, ws_handler: WsHandler, ws_path: str
) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        try:
            got = await _read_request(stream, conn)
        except h11.RemoteProtocolError:
            await _send(stream, conn, json_response(400, {"message": "malformed request"}))
            return
        if got is None:
            return
        request, raw = got
        if len(request.body) > MAX_BODY:
            await _send(stream, conn, json_response(413, {"message": "request body too large"}))
            return
        upgrading = request.path == ws_path and _wants_upgrade(request)
        reply = await handler(request)
        if isinstance(reply, Upgrade):
            if upgrading:
                await _upgrade(stream, conn, raw, ws_handler)
                return
            reply = json_response(400, {"message": "expected a WebSocket upgrade"})
        if isinstance(reply, Drop):
            return
        await _send(stream, conn, reply)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


async def _read_request(
    stream: trio.SocketStream, conn: h11.Connection
) -> tuple[HttpRequest, h11.Request] | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(_RECEIVE)
            if not data and head is None and conn.their_state is h11.IDLE:
                return None  # the client closed an idle keep-alive connection
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                break
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            return None
    assert head is not None
    target = urlsplit(head.target.decode("latin-1"))
    return (
        HttpRequest(
            method=head.method.decode("ascii"),
            path=target.path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers},
            body=bytes(body),
        ),
        head,
    )


def _wants_upgrade(request: HttpRequest) -> bool:
    return request.headers.get("upgrade", "").lower() == "websocket"


async def _upgrade(
    stream: trio.SocketStream, conn: h11.Connection, raw: h11.Request, ws_handler: WsHandler
) -> None:
    ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    ws.initiate_upgrade_connection(list(raw.headers), raw.target)
    for event in ws.events():
        if isinstance(event, ws_events.Request):
            await stream.send_all(ws.send(ws_events.AcceptConnection()))
            break
    else:
        return
    leftover, _ = conn.trailing_data
    channel = WsChannel(stream, ws)
    if leftover:
        ws.receive_data(bytes(leftover))
        channel._pending.extend(ws.events())
    await ws_handler(channel)


async def _send(stream: trio.SocketStream, conn: h11.Connection, reply: HttpResponse) -> None:
    has_body = reply.status not in (204, 304)
    headers = list(reply.headers)
    if has_body:
        headers[:0] = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
        ]
    try:
        parts = [conn.send(h11.Response(status_code=reply.status, headers=headers))]
        if has_body and reply.body:
            parts.append(conn.send(h11.Data(data=reply.body)))
        parts.append(conn.send(h11.EndOfMessage()))
    except h11.LocalProtocolError:
        return
    await stream.send_all(b"".join(p or b"" for p in parts))
