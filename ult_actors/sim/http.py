"""A small HTTP/1.1 server on trio and h11 (WebSocket by wsproto), shared by the broker simulators.

It serves keep-alive connections, plain replies with a ``Content-Length``,
chunked streaming replies (``StreamResponse``, e.g. newline-delimited JSON)
and, when given a WebSocket handler, upgrades: a handler answering
``UPGRADE`` to an upgrade request hands the connection over as a
``WsChannel``. A handler (or a stream's iterator) may raise
``DropConnection`` to cut the connection without any reply — the fault a
gateway must survive when a request was applied but its answer was lost. A
full ASGI server would hide exactly that control, which is why the
simulators use this instead of hypercorn.

What the server answers on its own (a body too large, a request h11 cannot
parse) comes in the simulated broker's shape, from a ``ReplyStyle``.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import structlog
import trio
import wsproto
import wsproto.events as ws_events

#: Request bodies larger than this get the style's ``too_large`` (orders are a few hundred bytes).
MAX_BODY_BYTES = 1 << 20
_RECV_BYTES = 65536


@dataclass(frozen=True)
class HttpRequest:
    """One parsed request; header names are lower-case."""

    method: str
    #: The path as sent, percent-escapes kept, so ``/`` inside a segment stays escaped.
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not)."""
        return json.loads(self.body or b"null")

    @property
    def wants_websocket(self) -> bool:
        """Whether this is a WebSocket upgrade request."""
        return self.headers.get("upgrade", "").lower() == "websocket"


@dataclass
class HttpResponse:
    """A complete reply."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


@dataclass
class StreamResponse:
    """A chunked reply whose chunks come from ``chunks`` until it ends; it ends the connection.

    The iterator may raise ``DropConnection`` to cut the connection
    mid-stream, as a network failure would.
    """

    status: int
    chunks: AsyncIterator[bytes]
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/octet-stream"


def json_response(
    status: int, data: Any, headers: list[tuple[str, str]] | None = None
) -> HttpResponse:
    """A JSON reply."""
    return HttpResponse(status, json.dumps(data).encode(), headers or [])


class DropConnection(Exception):
    """Raised by a handler (or a stream) to close the socket without replying further."""


class Upgrade:
    """Returned by a handler for a WebSocket upgrade request: accept it."""


UPGRADE = Upgrade()


@dataclass(frozen=True)
class ReplyStyle:
    """How one simulated broker's server answers on its own."""

    #: The reply to a request body over ``MAX_BODY_BYTES``; the connection closes after it.
    too_large: HttpResponse
    #: The reply to a request h11 cannot parse; ``None`` closes without a word.
    malformed: HttpResponse | None = None
    #: Send the standard reason phrase ("OK", "Not Found") in the status line; else none.
    reason_phrases: bool = False


Handler = Callable[[HttpRequest], Awaitable[HttpResponse | StreamResponse | Upgrade]]
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

    def _feed(self, data: bytes) -> None:
        self._ws.receive_data(data)
        self._pending.extend(self._ws.events())

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
                data = await self._stream.receive_some(_RECV_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.closed = True
                return None
            self._feed(data)
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
    handler: Handler,
    *,
    style: ReplyStyle,
    ws_handler: WsHandler | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``host:port`` until cancelled; ``started`` reports the bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(bound_port(listeners))
    await serve_listeners(handler, listeners, style=style, ws_handler=ws_handler)


def bound_port(listeners: list[trio.SocketListener]) -> int:
    """The TCP port ``listeners`` are bound to."""
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def serve_listeners(
    handler: Handler,
    listeners: list[trio.SocketListener],
    *,
    style: ReplyStyle,
    ws_handler: WsHandler | None = None,
) -> None:
    """Serve ``handler`` on already bound listeners until cancelled."""
    log = structlog.get_logger().bind(component="sim.http", port=bound_port(listeners))

    async def on_connection(stream: trio.SocketStream) -> None:
        try:
            await _serve_connection(stream, handler, style, ws_handler)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        except DropConnection:
            pass  # a fault: the peer hears nothing more
        except Exception as exc:  # one bad connection must not stop the server
            log.warning("sim connection failed", error=repr(exc))
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(on_connection, listeners)


async def _serve_connection(
    stream: trio.SocketStream,
    handler: Handler,
    style: ReplyStyle,
    ws_handler: WsHandler | None,
) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        try:
            got = await _read_request(stream, conn, style)
        except h11.RemoteProtocolError:
            if style.malformed is not None:
                await _send_reply(stream, conn, style.malformed, style)
            return
        if got is None:
            return
        request, head = got
        reply = await handler(request)
        if isinstance(reply, Upgrade):
            # Only an upgrade request can be upgraded; anything else is a handler bug: close.
            if ws_handler is not None and request.wants_websocket:
                await _upgrade(stream, conn, head, ws_handler)
            return
        if isinstance(reply, StreamResponse):
            await _send_stream(stream, conn, reply, style)
            return  # a stream ends its connection
        await _send_reply(stream, conn, reply, style)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()


async def _next_event(stream: trio.SocketStream, conn: h11.Connection) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(_RECV_BYTES))


async def _read_request(
    stream: trio.SocketStream, conn: h11.Connection, style: ReplyStyle
) -> tuple[HttpRequest, h11.Request] | None:
    head = await _next_event(stream, conn)
    if not isinstance(head, h11.Request):
        return None  # ConnectionClosed: the peer went away between requests
    body = bytearray()
    while True:
        part = await _next_event(stream, conn)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > MAX_BODY_BYTES:
                await _send_reply(stream, conn, style.too_large, style)
                raise DropConnection
        elif isinstance(part, h11.EndOfMessage):
            break
        else:
            return None
    # h11 admits only visible ASCII in the target.
    target = urlsplit(head.target.decode("ascii"))
    request = HttpRequest(
        method=head.method.decode("ascii"),
        path=target.path,
        query=dict(parse_qsl(target.query, keep_blank_values=True)),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers},
        body=bytes(body),
    )
    return request, head


def _status_line(status: int, headers: list[tuple[str, str]], style: ReplyStyle) -> h11.Response:
    reason = ""
    if style.reason_phrases:
        with contextlib.suppress(ValueError):
            reason = HTTPStatus(status).phrase
    return h11.Response(status_code=status, headers=headers, reason=reason)


async def _send_reply(
    stream: trio.SocketStream, conn: h11.Connection, reply: HttpResponse, style: ReplyStyle
) -> None:
    has_body = reply.status not in (204, 304)
    headers = list(reply.headers)
    if has_body:
        headers[:0] = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
        ]
    data = conn.send(_status_line(reply.status, headers, style)) or b""
    if has_body and reply.body:
        data += conn.send(h11.Data(data=reply.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


async def _send_stream(
    stream: trio.SocketStream, conn: h11.Connection, reply: StreamResponse, style: ReplyStyle
) -> None:
    headers = [("Content-Type", reply.content_type), *reply.headers]
    await stream.send_all(conn.send(_status_line(reply.status, headers, style)) or b"")
    async with trio.open_nursery() as nursery:
        # A client that hangs up ends the stream now, not at the next write.
        nursery.start_soon(_cancel_on_eof, stream, nursery.cancel_scope)
        try:
            async for chunk in reply.chunks:
                await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        except (DropConnection, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the caller closes the socket either way
        finally:
            aclose = getattr(reply.chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
            nursery.cancel_scope.cancel()


async def _cancel_on_eof(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while await stream.receive_some(_RECV_BYTES):
            pass  # a streaming client sends nothing more; ignore stray bytes
    scope.cancel()


async def _upgrade(
    stream: trio.SocketStream, conn: h11.Connection, head: h11.Request, ws_handler: WsHandler
) -> None:
    ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    ws.initiate_upgrade_connection(list(head.headers), head.target)
    for event in ws.events():
        if isinstance(event, ws_events.Request):
            await stream.send_all(ws.send(ws_events.AcceptConnection()))
            break
    else:
        return
    channel = WsChannel(stream, ws)
    leftover, _ = conn.trailing_data
    if leftover:
        channel._feed(bytes(leftover))
    await ws_handler(channel)
