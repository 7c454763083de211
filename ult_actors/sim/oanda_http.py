"""A small HTTP/1.1 server on trio and h11, enough for a broker simulator.

It serves keep-alive connections, plain replies with a ``Content-Length``,
chunked streaming replies (newline-delimited JSON), and can cut a connection
without any reply — the fault a gateway must survive when a request was
applied but its answer was lost. A full ASGI server would hide exactly that
last control, which is why the simulator uses this instead of hypercorn.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import h11
import trio

#: Request bodies larger than this get 413 (orders are a few hundred bytes).
MAX_BODY_BYTES = 1 << 20
_RECV_BYTES = 65536


@dataclass(frozen=True)
class HttpRequest:
    """One parsed request; header names are lower-case."""

    method: str
    #: The path as sent, percent-escapes kept, so ``/`` inside a segment stays escaped.
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpResponse:
    """A complete reply."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


@dataclass
class StreamResponse:
    """A chunked reply whose chunks come from ``chunks`` until it ends.

    The iterator may raise ``DropConnection`` to cut the connection
    mid-stream, as a network failure would.
    """

    status: int
    chunks: AsyncIterator[bytes]
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/octet-stream"


class DropConnection(Exception):
    """Raised by a handler (or a stream) to close the socket without replying further."""


Handler = Callable[[HttpRequest], Awaitable[HttpResponse | StreamResponse]]


async def serve_http(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``host:port`` until cancelled; reports the bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(bound_port(listeners))
    await serve_listeners(handler, listeners)


def bound_port(listeners: list[trio.SocketListener]) -> int:
    """The TCP port ``listeners`` are bound to."""
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def serve_listeners(handler: Handler, listeners: list[trio.SocketListener]) -> None:
    """Serve ``handler`` on already bound listeners until cancelled."""

    async def on_connection(stream: trio.SocketStream) -> None:
        await _serve_connection(stream, handler)

    await trio.serve_listeners(on_connection, listeners)


async def _serve_connection(stream: trio.SocketStream, handler: Handler) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _read_request(stream, conn)
            if request is None:
                return
            try:
                reply = await handler(request)
            except DropConnection:
                return
            if isinstance(reply, StreamResponse):
                await _send_stream(stream, conn, reply)
                return  # a stream ends its connection
            await _send_reply(stream, conn, reply)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, DropConnection):
        return
    finally:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.aclose()


async def _next_event(stream: trio.SocketStream, conn: h11.Connection) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(_RECV_BYTES))


async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> HttpRequest | None:
    event = await _next_event(stream, conn)
    if not isinstance(event, h11.Request):
        return None  # ConnectionClosed or the peer went away between requests
    body = bytearray()
    while True:
        part = await _next_event(stream, conn)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > MAX_BODY_BYTES:
                await _send_reply(stream, conn, HttpResponse(413, b'{"errorMessage":"too large"}'))
                raise DropConnection
        elif isinstance(part, h11.EndOfMessage):
            break
        else:
            return None
    target = event.target.decode("ascii", "replace")
    split = urlsplit(target)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
    return HttpRequest(
        method=event.method.decode("ascii"),
        raw_path=split.path,
        query=dict(parse_qsl(split.query, keep_blank_values=True)),
        headers=headers,
        body=bytes(body),
    )


def _head(
    status: int, content_type: str, extra: list[tuple[str, str]], length: int | None
) -> h11.Response:
    headers = [("content-type", content_type), *extra]
    if length is not None:
        headers.append(("content-length", str(length)))
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return h11.Response(status_code=status, headers=headers, reason=reason)


async def _send_reply(stream: trio.SocketStream, conn: h11.Connection, reply: HttpResponse) -> None:
    head = _head(reply.status, reply.content_type, reply.headers, len(reply.body))
    data = conn.send(head) or b""
    data += conn.send(h11.Data(data=reply.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


async def _send_stream(
    stream: trio.SocketStream, conn: h11.Connection, reply: StreamResponse
) -> None:
    await stream.send_all(
        conn.send(_head(reply.status, reply.content_type, reply.headers, None)) or b""
    )
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
