"""The simulators' shared HTTP server, at the socket: keep-alive, its own error replies, drops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

from ult_actors.sim.http import (
    MAX_BODY_BYTES,
    DropConnection,
    HttpRequest,
    HttpResponse,
    ReplyStyle,
    StreamResponse,
    Upgrade,
    json_response,
    serve_http,
)

PLAIN = ReplyStyle(too_large=json_response(413, {"message": "too big"}))
CHATTY = ReplyStyle(
    too_large=json_response(413, {"message": "too big"}),
    malformed=json_response(400, {"message": "malformed"}),
    reason_phrases=True,
)


async def _handler(request: HttpRequest) -> HttpResponse | StreamResponse | Upgrade:
    if request.path == "/drop":
        raise DropConnection
    if request.path == "/stream":

        async def chunks() -> AsyncIterator[bytes]:
            yield b"one\n"
            yield b"two\n"
            raise DropConnection

        return StreamResponse(200, chunks())
    return json_response(200, {"path": request.path, "query": request.query})


@asynccontextmanager
async def _server(style: ReplyStyle) -> AsyncIterator[trio.SocketStream]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_http, _handler, style=style))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            yield stream
        finally:
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def _read_all(stream: trio.SocketStream) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def _read_until(stream: trio.SocketStream, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, f"closed before {marker!r}: {data!r}"
        data += chunk
    return data


async def test_keep_alive_serves_requests_in_turn_on_one_connection() -> None:
    with trio.fail_after(10):
        async with _server(PLAIN) as stream:
            for path in ("/a?x=1", "/b%2Fc"):
                await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                reply = await _read_until(stream, b"}")
                assert reply.startswith(b"HTTP/1.1 200 \r\n")  # no reason phrase in this style
            assert b'"path": "/b%2Fc"' in reply  # percent-escapes kept


async def test_reason_phrases_when_the_style_asks_for_them() -> None:
    with trio.fail_after(10):
        async with _server(CHATTY) as stream:
            await stream.send_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await _read_until(stream, b"}")).startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_dropped_request_closes_without_a_word() -> None:
    with trio.fail_after(10):
        async with _server(CHATTY) as stream:
            await stream.send_all(b"POST /drop HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
            assert await _read_all(stream) == b""


async def test_an_oversized_body_gets_the_styles_413_and_the_connection_closes() -> None:
    head = f"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    with trio.fail_after(10):
        async with _server(PLAIN) as stream:
            await stream.send_all(head.encode() + b"x" * (MAX_BODY_BYTES + 1))
            reply = await _read_all(stream)
    assert reply.startswith(b"HTTP/1.1 413 ") and reply.endswith(b'{"message": "too big"}')


async def test_a_malformed_request_gets_the_styles_reply_or_silence() -> None:
    with trio.fail_after(10):
        async with _server(CHATTY) as stream:
            await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
            reply = await _read_all(stream)
        assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert reply.endswith(b'{"message": "malformed"}')
        async with _server(PLAIN) as stream:
            await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
            assert await _read_all(stream) == b""


async def test_a_stream_is_chunked_and_can_be_cut_mid_way() -> None:
    with trio.fail_after(10):
        async with _server(PLAIN) as stream:
            await stream.send_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            reply = await _read_all(stream)
    assert b"transfer-encoding: chunked" in reply.lower()
    assert b"one\n" in reply and b"two\n" in reply
    assert not reply.endswith(b"0\r\n\r\n")  # cut: no terminating chunk
