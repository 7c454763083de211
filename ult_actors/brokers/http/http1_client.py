"""The HTTP/1.1 client of a REST broker connection: kept-alive trio streams, replies parsed by httptools.

A broker connection sends its orders one request at a time over a few
kept-alive connections to one or two hosts; it needs no cookies, redirects,
auth flows, proxies or HTTP/2. ``Http1Client`` does what it needs and no
more: per origin (scheme, host, port) a stack of idle connections, at most
``max_connections`` in use at once, each request written with one
``send_all`` and its reply parsed as the bytes arrive, in as few scheduler
rounds as the bytes allow. It takes two of them where httpx (client layer,
then httpcore's pool) takes six (``docs/performance.md``, issue 16).

The request is written here: its fixed headers (credentials, ``Accept``,
``User-Agent``) are checked and encoded once, when the client is made, and
each request adds its request line, ``Host``, its own headers and
``Content-Length``. Replies are parsed by httptools (the llhttp parser, in
C): lengths, chunked bodies, keep-alive and 1xx answers. h11 did both ends
in Python at ~80 us of CPU per request on the Alpaca path, where this takes
~5 us.

What it answers with are httpx's own types, so the connectors read replies
and catch failures as before: an ``httpx.Response``, and on failure the
``httpx`` exception httpx would raise (``ConnectTimeout``, ``ReadError``,
``RemoteProtocolError``, ``PoolTimeout``...; every one an
``httpx.HTTPError``). Connection loss: an idle connection the server closed
(or wrote to) is dropped before it is reused; one that breaks mid-request is
closed and its request fails (never resent: a write's outcome is then
unknown, and the connector looks it up). Timeouts: connect (TCP and TLS),
write, read (each wait for bytes; ``None`` for a stream judged by its
heartbeats) and pool, all from ``httpx.Timeout``.
"""

from __future__ import annotations

import re
import select
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import httptools
import httpx
import msgspec
import trio

from ult_actors.brokers.http.pacing import ConnectionPacer

#: Idle connections older than this are closed rather than reused (httpx's default too).
KEEPALIVE_EXPIRY_S = 5.0
_READ_SIZE = 65536
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: A method or header name: an RFC 9110 token.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: What a header value or request target must not hold (a second line, a NUL).
_LINE_BREAK = re.compile(rb"[\r\n\x00]")
#: Headers this client writes itself.
_OWN_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding"})

Origin = tuple[str, str, int]


def _header_lines(headers: Mapping[str, str]) -> bytes:
    """``Name: value\r\n`` for each header, refused (``httpx.LocalProtocolError``) if malformed."""
    lines = []
    for name, value in headers.items():
        key, val = name.encode(), value.encode()
        if not _TOKEN.fullmatch(key) or _LINE_BREAK.search(val) or key.lower() in _OWN_HEADERS:
            raise httpx.LocalProtocolError(f"header {name!r} cannot be sent as given")
        lines.append(key + b": " + val + b"\r\n")
    return b"".join(lines)


class _Reply:
    """One reply as httptools parses it (its callbacks); ``body`` collects until taken."""

    __slots__ = ("body", "complete", "extra", "head", "headers", "keep_alive", "parser", "status")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.status = 0
        self.head = False  # the final (non-1xx) head is in
        self.complete = False
        self.keep_alive = False  # the server will go on after this reply (read with the head)
        self.extra = False  # bytes after the reply: the connection cannot be reused

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True  # a second reply nobody asked for

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status >= 200:
            self.head = True
            self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.head:
            self.complete = True
        else:  # a 1xx answer: the real reply follows
            self.headers.clear()

    def take_body(self) -> bytes:
        chunks, self.body = self.body, []
        return b"".join(chunks)

    def until_close(self) -> bool:
        """Whether the body runs until the server closes (neither a length nor chunks)."""
        return not any(
            k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self.headers
        )


class _Connection:
    """One kept-alive stream to an origin."""

    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType) -> None:
        self.stream = stream
        self.sock = sock
        self.idle_since = 0.0

    def reusable(self, now: float) -> bool:
        """Still open, not expired, and nothing waiting to be read (a close or stray bytes)."""
        if now - self.idle_since > KEEPALIVE_EXPIRY_S:
            return False
        try:
            readable, _, _ = select.select([self.sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        """Hang up at once (no TLS goodbye); a task reading or writing it gets an error."""
        self.sock.close()


class _Body(httpx.AsyncByteStream):
    """A reply's body as it arrives; the connection goes back to its pool once it is all read."""

    def __init__(
        self,
        client: Http1Client,
        origin: Origin,
        conn: _Connection,
        reply: _Reply,
        read_s: float | None,
    ):
        self._client = client
        self._origin = origin
        self._conn: _Connection | None = conn
        self._reply = reply
        self._read_s = read_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn, reply = self._conn, self._reply
        if conn is None:
            return
        while True:
            if reply.body:
                yield reply.take_body()
            if reply.complete:
                self._conn = None
                self._client._release(self._origin, conn, reply)
                return
            await self._client._feed(conn, reply, self._read_s)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:  # not read to the end: the connection is mid-reply, unusable
            self._client._discard(conn)


class Http1Client:
    """The requests of one broker connection (see the module docstring)."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
        max_connections: int,
        base_url: str = "",
        ssl_context: ssl.SSLContext | None = None,
        pacer: ConnectionPacer | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = _header_lines(headers)  # checked and encoded once
        self._hosts: dict[Origin, bytes] = {}
        self._timeout = timeout
        self._slots = trio.Semaphore(max_connections)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._ssl_context = ssl_context
        self._closed = False
        #: Paces new connections (a venue's connection limit); ``None``: unpaced.
        self._pacer = pacer

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request and read its whole reply."""
        extra = dict(headers or {})
        if json is not None and content is None:
            content = msgspec.json.encode(json)
            extra.setdefault("Content-Type", "application/json")
        origin, target = self._target(url, params)
        conn = await self._send(origin, method, target, content, extra)
        reply = _Reply()
        try:
            while not reply.complete:
                await self._feed(conn, reply, self._timeout.read)
        except BaseException:
            self._discard(conn)
            raise
        self._release(origin, conn, reply)
        return httpx.Response(reply.status, headers=reply.headers, content=reply.take_body())

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A request whose reply's body is read as it arrives (``aiter_lines``, ``aread``)."""
        read_s = (timeout or self._timeout).read
        origin, target = self._target(url, params)
        conn = await self._send(origin, method, target, None, {}, timeout)
        reply = _Reply()
        try:
            while not reply.head:
                await self._feed(conn, reply, read_s)
        except BaseException:
            self._discard(conn)
            raise
        response = httpx.Response(
            reply.status, headers=reply.headers, stream=_Body(self, origin, conn, reply, read_s)
        )
        try:
            yield response
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close every connection, idle or in use (a request in flight fails); safe to repeat."""
        self._closed = True
        conns = [c for stack in self._idle.values() for c in stack] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        for conn in conns:
            conn.close()

    # -- one request --------------------------------------------------------

    def _target(self, url: str, params: Mapping[str, str] | None) -> tuple[Origin, str]:
        if url.startswith("/"):
            url = self._base_url + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"not an http(s) URL: {parts.scheme}://...")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = parts.path or "/"
        query = "&".join(q for q in (parts.query, urlencode(params) if params else "") if q)
        if query:
            target += "?" + query
        return (parts.scheme, parts.hostname, port), target

    def _host(self, origin: Origin) -> bytes:
        """The ``Host`` header line of ``origin``."""
        line = self._hosts.get(origin)
        if line is None:
            scheme, host, port = origin
            named = f"[{host}]" if ":" in host else host  # an IPv6 literal goes in brackets
            default_port = 443 if scheme == "https" else 80
            value = named if port == default_port else f"{named}:{port}"
            line = self._hosts[origin] = b"Host: " + value.encode() + b"\r\n"
        return line

    def _request_bytes(
        self,
        origin: Origin,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> bytes:
        verb, path = method.encode(), target.encode()
        if not _TOKEN.fullmatch(verb) or method == "HEAD":
            # HEAD's reply has a length but no body, which the parser is not told.
            raise httpx.LocalProtocolError(f"method {method!r} is not sent by this client")
        if b" " in path or _LINE_BREAK.search(path):
            raise httpx.LocalProtocolError("the request target holds a space or a line break")
        parts = [verb, b" ", path, b" HTTP/1.1\r\n", self._host(origin), self._headers]
        if headers:
            parts.append(_header_lines(headers))
        if body is not None or method in _BODY_METHODS:
            parts += [b"Content-Length: ", str(len(body or b"")).encode(), b"\r\n"]
        parts.append(b"\r\n")
        if body:
            parts.append(body)
        return b"".join(parts)

    async def _send(
        self,
        origin: Origin,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: httpx.Timeout | None = None,
    ) -> _Connection:
        """A connection with the whole request written to it, in one ``send_all``."""
        timeout = timeout or self._timeout
        data = self._request_bytes(origin, method, target, body, headers)
        conn = await self._acquire(origin, timeout)
        try:
            with _fail_after(timeout.write, httpx.WriteTimeout, "writing the request timed out"):
                await conn.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._discard(conn)
            raise httpx.WriteError(
                f"connection lost while writing ({type(exc).__name__})"
            ) from None
        except BaseException:
            self._discard(conn)
            raise
        return conn

    async def _feed(self, conn: _Connection, reply: _Reply, read_s: float | None) -> None:
        """Read what arrives next and parse it into ``reply``."""
        with _fail_after(read_s, httpx.ReadTimeout, "reading the reply timed out"):
            try:
                data = await conn.stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise httpx.ReadError(
                    f"connection lost while reading ({type(exc).__name__})"
                ) from None
        if not data:
            if reply.head and reply.until_close():
                reply.complete = reply.extra = True  # the close ends the body; no reuse
                return
            raise httpx.RemoteProtocolError("the server closed the connection mid-reply")
        try:
            reply.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise httpx.RemoteProtocolError("the server switched protocols") from None
        except httptools.HttpParserError as exc:
            if not reply.complete:
                raise httpx.RemoteProtocolError(
                    f"the server's reply is not HTTP/1.1 ({exc})"
                ) from None
            reply.extra = True  # garbage after a whole reply: this connection is done

    # -- the pool -----------------------------------------------------------

    async def _acquire(self, origin: Origin, timeout: httpx.Timeout) -> _Connection:
        if self._closed:
            raise httpx.ConnectError("the HTTP client is closed")
        try:
            self._slots.acquire_nowait()  # no scheduler round when a slot is free
        except trio.WouldBlock:
            with _fail_after(timeout.pool, httpx.PoolTimeout, "no free connection in time"):
                await self._slots.acquire()
        try:
            conn = self._reuse(origin) or await self._connect(origin, timeout.connect)
        except BaseException:
            self._slots.release()
            raise
        self._busy.add(conn)
        return conn

    def _reuse(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = trio.current_time()
        while stack:
            conn = stack.pop()
            if conn.reusable(now):
                return conn
            conn.close()  # closed or expired: nothing to say to the server
        return None

    async def _connect(self, origin: Origin, connect_s: float | None) -> _Connection:
        scheme, host, port = origin
        if self._pacer is not None:
            await self._pacer.wait()
        with _fail_after(connect_s, httpx.ConnectTimeout, "connecting timed out"):
            try:
                tcp = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise httpx.ConnectError(f"cannot connect ({type(exc).__name__})") from None
            if scheme == "http":
                return _Connection(tcp, tcp.socket)
            tls = trio.SSLStream(tcp, self._tls(), server_hostname=host, https_compatible=True)
            try:
                await tls.do_handshake()
            except (trio.BrokenResourceError, OSError) as exc:
                await trio.aclose_forcefully(tcp)
                raise httpx.ConnectError(f"TLS handshake failed ({type(exc).__name__})") from None
            except BaseException:
                await trio.aclose_forcefully(tcp)
                raise
            return _Connection(tls, tcp.socket)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # The CA bundle httpx verified against, so no certificate is trusted less or more.
            self._ssl_context = ssl.create_default_context(cafile=certifi.where())
        return self._ssl_context

    def _release(self, origin: Origin, conn: _Connection, reply: _Reply) -> None:
        """A reply read to its end: keep the connection if both sides may go on."""
        self._busy.discard(conn)
        self._slots.release()
        if not self._closed and reply.keep_alive and not reply.extra:
            conn.idle_since = trio.current_time()
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()

    def _discard(self, conn: _Connection) -> None:
        """A request that failed or was given up on: its connection is in an unknown state."""
        if conn in self._busy:
            self._busy.discard(conn)
            self._slots.release()
        conn.close()


class _fail_after:
    """``trio.fail_after`` raising the httpx timeout ``error`` instead; ``None`` waits forever."""

    def __init__(self, seconds: float | None, error: type[httpx.TimeoutException], what: str):
        self._scope = trio.CancelScope() if seconds is None else trio.move_on_after(seconds)
        self._error = error
        self._what = what

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._scope.__exit__(*exc)
        if self._scope.cancelled_caught:  # our deadline, not an outer cancellation
            raise self._error(self._what)
