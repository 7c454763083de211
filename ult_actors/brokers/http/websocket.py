"""A client WebSocket read in its caller's task: wsproto on one trio stream.

A broker's update stream is one reader taking one message at a time.
trio-websocket serves that with a reader task of its own and a message
queue between it and the caller: two tasks and a channel hand-off per
message, ~150 us of CPU per Alpaca trade update against ~25 us for wsproto's
framing and the decode (``docs/performance.md``, issue 16). ``WebSocket``
parses frames in ``get_message`` itself, so a message costs one wait for
bytes and no hand-off.

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
from collections import deque
from urllib.parse import urlsplit

import certifi
import trio
import wsproto
import wsproto.events as ws
import wsproto.utilities

_READ_SIZE = 65536
#: A longer message ends the connection (a trade update is ~1 KB; trio-websocket's limit too).
MAX_MESSAGE_BYTES = 1 << 20
#: How long a control frame (pong, close) may take to write before the line is given up.
_CONTROL_WRITE_S = 5.0


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


class WebSocket:
    """One open client WebSocket (see the module docstring); ``connect`` makes one."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self._events: deque[ws.Event] = deque()
        self._parts: list[str | bytes] = []
        self._parts_size = 0
        self._send_lock = trio.Lock()  # the reader's pongs and the caller's sends
        self.closed = False
        #: ``trio.current_time()`` when bytes last arrived (a message, a ping or a pong).
        self.last_received_at = trio.current_time()

    async def _open(self, host: str, target: str) -> None:
        await self._stream.send_all(self._ws.send(ws.Request(host=host, target=target)))
        while True:
            event = await self._next_event()
            if isinstance(event, ws.AcceptConnection):
                return
            if isinstance(event, ws.RejectConnection):
                self.closed = True
                raise WebSocketRejected(event.status_code)
            # RejectData of a refusal comes after RejectConnection: never reached here.

    async def get_message(self) -> str | bytes:
        """The next whole message (text as ``str``, binary as ``bytes``)."""
        while True:
            event = await self._next_event()
            if isinstance(event, ws.Message):
                self._parts.append(event.data)
                self._parts_size += len(event.data)
                if self._parts_size > MAX_MESSAGE_BYTES:
                    await self.aclose(code=1009)  # "message too big"
                    raise WebSocketClosed(f"a message longer than {MAX_MESSAGE_BYTES} bytes")
                if event.message_finished:
                    parts, self._parts, self._parts_size = self._parts, [], 0
                    if len(parts) == 1:
                        return parts[0]
                    if isinstance(parts[0], bytes):
                        return b"".join(p for p in parts if isinstance(p, bytes))
                    return "".join(p for p in parts if isinstance(p, str))
            elif isinstance(event, ws.Ping):
                await self._send_control(event.response())
            elif isinstance(event, ws.CloseConnection):
                await self._send_control(event.response())
                await self._hang_up()
                raise WebSocketClosed(f"closed by the server ({event.code} {event.reason})")

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

    async def _next_event(self) -> ws.Event:
        while not self._events:
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
            try:
                self._ws.receive_data(bytes(data))  # trio gives bytes: no copy
                self._events.extend(self._ws.events())
            except wsproto.utilities.RemoteProtocolError as exc:
                await self._hang_up()
                raise WebSocketClosed(f"the server broke the WebSocket protocol ({exc})") from None
        return self._events.popleft()

    async def _send(self, event: ws.Event) -> None:
        if self.closed:
            raise WebSocketClosed("the connection is closed")
        try:
            data = self._ws.send(event)
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
