"""The REST brokers' client WebSocket against a real server on 127.0.0.1 (the simulators' own).

The server runs in the test's trio loop and does what each test's handler
says with its ``WsChannel``: send, close, or refuse the upgrade.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from ult_actors.brokers.http import websocket
from ult_actors.brokers.http.websocket import MAX_MESSAGE_BYTES, WebSocketClosed, WebSocketRejected
from ult_actors.sim.http import (
    UPGRADE,
    HttpRequest,
    HttpResponse,
    ReplyStyle,
    Upgrade,
    WsChannel,
    json_response,
    serve_http,
)

STYLE = ReplyStyle(too_large=json_response(413, {"message": "too large"}))


@asynccontextmanager
async def serving(
    ws_handler: Callable[[WsChannel], Awaitable[None]], *, refuse: int | None = None
) -> AsyncIterator[str]:
    """A server upgrading ``/stream`` (or answering ``refuse``); yields its ``ws://`` URL."""

    async def handler(request: HttpRequest) -> HttpResponse | Upgrade:
        if refuse is not None:
            return json_response(refuse, {"message": "no"})
        return UPGRADE

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(
                handler, style=STYLE, ws_handler=ws_handler, task_status=task_status
            )
        )
        yield f"ws://127.0.0.1:{port}/stream"
        nursery.cancel_scope.cancel()


async def test_messages_go_both_ways_text_as_str_and_binary_as_bytes() -> None:
    async def echo_twice(channel: WsChannel) -> None:
        while (message := await channel.receive()) is not None:
            await channel.send(message)
            await channel.send(message.encode() if isinstance(message, str) else message)

    async with serving(echo_twice) as url:
        with trio.fail_after(10):
            ws = await websocket.connect(url)
            await ws.send_message('{"action": "listen"}')
            assert await ws.get_message() == '{"action": "listen"}'
            assert await ws.get_message() == b'{"action": "listen"}'
            await ws.aclose()


async def test_a_server_close_or_a_cut_line_ends_the_reader_with_websocket_closed() -> None:
    async def close_at_once(channel: WsChannel) -> None:
        await channel.send("bye")
        await channel.close(1001, "going away")

    async def cut(channel: WsChannel) -> None:
        await channel.send("bye")
        await channel.abort()

    for handler in (close_at_once, cut):
        async with serving(handler) as url:
            with trio.fail_after(10):
                ws = await websocket.connect(url)
                assert await ws.get_message() == "bye"
                with pytest.raises(WebSocketClosed):
                    await ws.get_message()
                assert ws.closed
                with pytest.raises(WebSocketClosed):
                    await ws.send_message("anyone?")


async def test_a_refused_upgrade_names_the_http_status() -> None:
    async def never(channel: WsChannel) -> None:  # pragma: no cover - not upgraded
        raise AssertionError("upgraded")

    async with serving(never, refuse=401) as url:
        with trio.fail_after(10), pytest.raises(WebSocketRejected) as refused:
            await websocket.connect(url)
        assert refused.value.status_code == 401


async def test_a_pong_counts_as_traffic(autojump_clock: trio.testing.MockClock) -> None:
    # The stream's liveness check reads last_received_at: a pong must move it
    # even though get_message returns only messages.
    async def quiet(channel: WsChannel) -> None:
        while await channel.receive() is not None:
            pass  # the channel answers pings by itself

    async with serving(quiet) as url:
        ws = await websocket.connect(url)
        await trio.sleep(30)
        before = ws.last_received_at
        await ws.ping(b"are you there")
        with trio.move_on_after(1):
            await ws.get_message()  # reads the pong, then waits for a message in vain
        assert ws.last_received_at > before
        await ws.aclose()


async def test_a_message_over_the_limit_ends_the_connection() -> None:
    async def flood(channel: WsChannel) -> None:
        await channel.send(b"x" * (MAX_MESSAGE_BYTES + 1))
        await channel.receive()

    async with serving(flood) as url:
        with trio.fail_after(10):
            ws = await websocket.connect(url)
            with pytest.raises(WebSocketClosed, match="longer than"):
                await ws.get_message()
            assert ws.closed


def frame(opcode: int, payload: bytes, *, fin: bool = True, first: int = 0) -> bytes:
    """A server frame built by hand (unmasked; ``first`` sets extra bits of its first byte)."""
    return bytes([(0x80 if fin else 0) | first | opcode, len(payload)]) + payload


async def test_a_message_in_frames_with_a_ping_between_them_is_read_as_one_message() -> None:
    async def fragments(channel: WsChannel) -> None:
        await channel._send_raw(
            frame(0x1, b'{"a": ', fin=False) + frame(0x9, b"hi") + frame(0x0, "\u00e9}".encode())
        )
        await channel._send_raw(frame(0x2, b"\x00\x01"))
        await channel.receive()

    async with serving(fragments) as url:
        with trio.fail_after(10):
            ws = await websocket.connect(url)
            assert await ws.get_message() == '{"a": \u00e9}'
            assert await ws.get_message() == b"\x00\x01"
            await ws.aclose()


async def test_frames_that_break_the_protocol_end_the_connection_with_websocket_closed() -> None:
    bad = [
        frame(0x2, b"x", first=0x40),  # a reserved bit, no extension agreed
        bytes([0x82, 0x81, 1, 2, 3, 4, 0x79]),  # masked, from the server
        frame(0x0, b"x"),  # a continuation of nothing
        frame(0x9, b"p", fin=False),  # a fragmented ping
        frame(0x1, b"\xff\xfe"),  # text that is not UTF-8
    ]
    for data in bad:

        async def send_bad(channel: WsChannel, data: bytes = data) -> None:
            await channel._send_raw(data)
            await channel.receive()

        async with serving(send_bad) as url:
            with trio.fail_after(10):
                ws = await websocket.connect(url)
                with pytest.raises(WebSocketClosed):
                    await ws.get_message()
                assert ws.closed, data
