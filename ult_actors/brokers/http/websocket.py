"""A client WebSocket read in its caller's task, on one trio stream.

A broker's update stream is one reader taking one message at a time.
trio-websocket serves that with a reader task of its own and a message
queue between it and the caller: two tasks and a channel hand-off per
message, ~150 us of CPU per Alpaca trade update against ~25 us for wsproto's
framing and the decode (``docs/performance.md``, issue 16). ``WebSocket``
parses frames in ``get_message`` itself, so a message costs one wait for
bytes and no hand-off.

The server's frames are read by ``_FrameReader`` (RFC 6455 section 5, no
extension offered, so none agreed): wsproto's reader took ~17 us a frame in
Python, this ~1 us. wsproto still writes ours (masked, as a client must);
the upgrade's answer is parsed by httptools, which says where the frames
begin, and its ``Sec-WebSocket-Accept`` checked with wsproto's token.

What it handles: ``ws``/``wss`` URLs (TLS verified against the same CA
bundle as the HTTP client), the opening handshake, text and binary messages
in any number of frames up to ``MAX_MESSAGE_BYTES``, pings answered, pongs counted as traffic
(``last_received_at``), the close handshake. Every way the connection fails
raises ``WebSocketClosed`` (``WebSocketRejected`` for a refused upgrade);
timeouts are the caller's (``trio.fail_after`` around ``connect`` and
around each ``get_message``).
"""

from __future__ import annotations

import contextlib
import ssl
from typing import NoReturn
from urllib.parse import urlsplit

import certifi
import httptools
import trio
import wsproto.events as ws
import wsproto.utilities
from wsproto.connection import Connection, ConnectionType
from wsproto.utilities import generate_accept_token, generate_nonce

_READ_SIZE = 65536
#: A longer message ends the connection (a trade update is ~1 KB; trio-websocket's limit too).
MAX_MESSAGE_BYTES = 1 << 20
#: How long a control frame (pong, close) may take to write before the line is given up.
_CONTROL_WRITE_S = 5.0


_TEXT, _BINARY, _CONTINUATION = 0x1, 0x2, 0x0
_CLOSE, _PING, _PONG = 0x8, 0x9, 0xA


class WebSocketClosed(Exception):
    """The connection is closed or lost (a close frame, EOF, a socket error, bad framing)."""


class WebSocketRejected(WebSocketClosed):
    """The server refused the upgrade with an HTTP status."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"WebSocket upgrade refused (HTTP {status_code})")
        self.status_code = status_code


_default_tls: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _default_tls  # one context per process: loading the CA bundle costs ~10 ms
    if _default_tls is None:
        _default_tls = ssl.create_default_context(cafile=certifi.where())
    return _default_tls


async def connect(url: str, *, ssl_context: ssl.SSLContext | None = None) -> WebSocket:
    """Open ``url`` (``ws://`` or ``wss://``) and complete the opening handshake."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a WebSocket URL: {parts.scheme}://...")
    default_port = 443 if parts.scheme == "wss" else 80
    port = parts.port or default_port
    try:
        tcp = await trio.open_tcp_stream(parts.hostname, port)
    except OSError as exc:
        raise WebSocketClosed(f"cannot connect ({type(exc).__name__})") from None
    stream: trio.abc.Stream = tcp
    try:
        if parts.scheme == "wss":
            tls = trio.SSLStream(
                tcp, ssl_context or _tls(), server_hostname=parts.hostname, https_compatible=True
            )
            await tls.do_handshake()
            stream = tls
        named = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        host = named if port == default_port else f"{named}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        socket = WebSocket(stream)
        await socket._open(host, target)
    except (trio.BrokenResourceError, OSError) as exc:
        await trio.aclose_forcefully(tcp)
        raise WebSocketClosed(f"handshake failed ({type(exc).__name__})") from None
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return socket


class _ProtocolError(Exception):
    """The server's frames break RFC 6455."""


class _MessageTooBig(Exception):
    """A message longer than ``MAX_MESSAGE_BYTES``."""


class _FrameReader:
    """The server's frames from the bytes as they arrive: (opcode, fin, payload) each."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> tuple[int, bool, bytes] | None:
        """The next whole frame, or None until more bytes come."""
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise _ProtocolError("reserved bits set, and no extension was agreed")
        if second & 0x80:
            raise _ProtocolError("a masked frame from the server")
        opcode, fin, length, start = first & 0x0F, bool(first & 0x80), second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, start = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, start = int.from_bytes(buffer[2:10], "big"), 10
        if opcode >= _CLOSE and (not fin or length > 125):
            raise _ProtocolError("a control frame fragmented or longer than 125 bytes")
        if opcode not in (_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG):
            raise _ProtocolError(f"unknown opcode {opcode:#x}")
        if length > MAX_MESSAGE_BYTES:
            raise _MessageTooBig  # refused by its declared size, before it is buffered
        end = start + length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[start:end])
        del buffer[:end]
        return opcode, fin, payload


class _UpgradeAnswer:
    """The upgrade's answer as httptools parses it (its callbacks)."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.complete = True


class WebSocket:
    """One open client WebSocket (see the module docstring); ``connect`` makes one."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._writer = Connection(ConnectionType.CLIENT)  # frames ours, masked
        self._frames = _FrameReader()
        self._parts: list[bytes] = []
        self._parts_size = 0
        self._text = False  # the message being assembled is text
        self._send_lock = trio.Lock()  # the reader's pongs and the caller's sends
        self.closed = False
        #: ``trio.current_time()`` when bytes last arrived (a message, a ping or a pong).
        self.last_received_at = trio.current_time()

    async def _open(self, host: str, target: str) -> None:
        nonce = generate_nonce().decode()
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await self._stream.send_all(request.encode())
        answer = _UpgradeAnswer()
        parser = httptools.HttpResponseParser(answer)
        frames = b""
        while True:
            data = await self._receive()
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                frames = data[upgrade.args[0] :]  # what follows the answer is ours
            except httptools.HttpParserError as exc:
                self.closed = True
                raise WebSocketClosed(f"the upgrade's answer is not HTTP/1.1 ({exc})") from None
            if answer.complete:
                break
        status = parser.get_status_code()
        if status != 101:
            self.closed = True
            raise WebSocketRejected(status)
        headers = answer.headers
        if (
            headers.get(b"upgrade", b"").lower() != b"websocket"
            or b"upgrade" not in headers.get(b"connection", b"").lower()
            or headers.get(b"sec-websocket-accept") != generate_accept_token(nonce.encode())
        ):
            self.closed = True
            raise WebSocketClosed("the server's upgrade answer is not a WebSocket handshake")
        self._frames.feed(frames)

    async def get_message(self) -> str | bytes:
        """The next whole message (text as ``str``, binary as ``bytes``)."""
        while True:
            try:
                frame = self._frames.next_frame()
            except _ProtocolError as exc:
                await self._hang_up()
                raise WebSocketClosed(f"the server broke the WebSocket protocol ({exc})") from None
            except _MessageTooBig:
                await self._too_big()
            if frame is None:
                self._frames.feed(await self._receive())
                continue
            opcode, fin, payload = frame
            if opcode in (_TEXT, _BINARY, _CONTINUATION):
                message = await self._assemble(opcode, fin, payload)
                if message is not None:
                    return message
            elif opcode == _PING:
                await self._send_control(ws.Pong(payload=payload))
            elif opcode == _CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                reason = payload[2:].decode("utf-8", "replace")
                await self._send_control(ws.CloseConnection(code=code))
                await self._hang_up()
                raise WebSocketClosed(f"closed by the server ({code} {reason})")
            # A pong: its bytes count as traffic (``last_received_at``), nothing else.

    async def _assemble(self, opcode: int, fin: bool, payload: bytes) -> str | bytes | None:
        """The message ``payload`` ends, or None while it goes on."""
        if (opcode == _CONTINUATION) != bool(self._parts):
            await self._hang_up()
            raise WebSocketClosed("the server broke the WebSocket protocol (frame out of turn)")
        if opcode != _CONTINUATION:
            self._text = opcode == _TEXT
        self._parts.append(payload)
        self._parts_size += len(payload)
        if self._parts_size > MAX_MESSAGE_BYTES:
            await self._too_big()
        if not fin:
            return None
        parts, self._parts, self._parts_size = self._parts, [], 0
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if not self._text:
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            await self.aclose(code=1007)  # "invalid frame payload data"
            raise WebSocketClosed("the server sent a text message that is not UTF-8") from None

    async def _too_big(self) -> NoReturn:
        await self.aclose(code=1009)  # "message too big"
        raise WebSocketClosed(f"a message longer than {MAX_MESSAGE_BYTES} bytes")

    async def send_message(self, message: str | bytes) -> None:
        """Send one message (text for ``str``, binary for ``bytes``)."""
        event: ws.Event = (
            ws.BytesMessage(data=message)
            if isinstance(message, bytes)
            else ws.TextMessage(data=message)
        )
        await self._send(event)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping; its pong shows in ``last_received_at`` when the reader reads it."""
        await self._send(ws.Ping(payload=payload))

    async def aclose(self, code: int = 1000) -> None:
        """Say goodbye (a close frame, not waited on for long) and hang up; safe to repeat."""
        if self.closed:
            return
        with contextlib.suppress(WebSocketClosed):
            await self._send_control(ws.CloseConnection(code=code))
        await self._hang_up()

    # -- internals ------------------------------------------------------------

    async def _receive(self) -> bytes:
        """The next bytes that arrive; ``WebSocketClosed`` when the line is lost or closed."""
        if self.closed:
            raise WebSocketClosed("the connection is closed")
        try:
            data = await self._stream.receive_some(_READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            await self._hang_up()
            raise WebSocketClosed(f"connection lost ({type(exc).__name__})") from None
        if not data:
            await self._hang_up()
            raise WebSocketClosed("connection lost (EOF)")
        self.last_received_at = trio.current_time()
        return bytes(data)  # trio gives bytes: no copy

    async def _send(self, event: ws.Event) -> None:
        if self.closed:
            raise WebSocketClosed("the connection is closed")
        try:
            data = self._writer.send(event)
        except wsproto.utilities.LocalProtocolError as exc:  # e.g. after the server's close
            raise WebSocketClosed(str(exc)) from None
        try:
            async with self._send_lock:
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            await self._hang_up()
            raise WebSocketClosed(f"connection lost while sending ({type(exc).__name__})") from None

    async def _send_control(self, event: ws.Event) -> None:
        # Shielded, so a reader cancelled by its caller's deadline never leaves half a
        # frame on the line; bounded, so a peer that reads nothing cannot hold us.
        with trio.CancelScope(shield=True), trio.move_on_after(_CONTROL_WRITE_S) as scope:
            await self._send(event)
        if scope.cancelled_caught:
            await self._hang_up()
            raise WebSocketClosed("writing a control frame timed out")

    async def _hang_up(self) -> None:
        self.closed = True
        await trio.aclose_forcefully(self._stream)
