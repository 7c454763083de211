"""The HTTP/1.1 client of a REST broker connection: h11 on kept-alive trio streams.

A broker connection sends its orders one request at a time over a few
kept-alive connections to one or two hosts; it needs no cookies, redirects,
auth flows, proxies or HTTP/2. ``H11Client`` does what it needs and no more:
per origin (scheme, host, port) a stack of idle connections, at most
``max_connections`` in use at once, each request written with one
``send_all`` and its reply parsed by h11 in as few scheduler rounds as the
bytes allow. It takes two of them where httpx (client layer, then httpcore's
pool) takes six, which on the Alpaca path is most of what httpx cost
(``docs/performance.md``, issue 16).

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

import select
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import h11
import httpx
import msgspec
import trio

from ult_actors.brokers.http.pacing import ConnectionPacer

#: Idle connections older than this are closed rather than reused (httpx's default too).
KEEPALIVE_EXPIRY_S = 5.0
_READ_SIZE = 65536
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Origin = tuple[str, str, int]


class _Connection:
    """One kept-alive stream to an origin and the h11 state of its current request."""

    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType) -> None:
        self.stream = stream
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT)
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

    def __init__(self, client: H11Client, origin: Origin, conn: _Connection, read_s: float | None):
        self._client = client
        self._origin = origin
        self._conn: _Connection | None = conn
        self._read_s = read_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        while True:
            event = await self._client._next_event(conn, self._read_s)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._conn = None
                self._client._release(self._origin, conn)
                return

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:  # not read to the end: the connection is mid-reply, unusable
            self._client._discard(conn)


class H11Client:
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
        self._headers = [(k.encode(), v.encode()) for k, v in headers.items()]
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
        try:
            head = await self._head(conn, self._timeout.read)
            chunks = []
            while True:
                event = await self._next_event(conn, self._timeout.read)
                if isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
        except BaseException:
            self._discard(conn)
            raise
        self._release(origin, conn)
        return httpx.Response(head.status_code, headers=head.headers, content=b"".join(chunks))

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
        try:
            head = await self._head(conn, read_s)
        except BaseException:
            self._discard(conn)
            raise
        response = httpx.Response(
            head.status_code, headers=head.headers, stream=_Body(self, origin, conn, read_s)
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
        conn = await self._acquire(origin, timeout)
        scheme, host, port = origin
        default_port = 443 if scheme == "https" else 80
        named = f"[{host}]" if ":" in host else host  # an IPv6 literal goes in brackets
        host_header = named if port == default_port else f"{named}:{port}"
        all_headers = [(b"Host", host_header.encode()), *self._headers]
        all_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
        if body is not None or method in _BODY_METHODS:
            all_headers.append((b"Content-Length", str(len(body or b"")).encode()))
        try:
            data = conn.h11.send(h11.Request(method=method, target=target, headers=all_headers))
            if body:
                data = (data or b"") + (conn.h11.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (conn.h11.send(h11.EndOfMessage()) or b"")
            with _fail_after(timeout.write, httpx.WriteTimeout, "writing the request timed out"):
                await conn.stream.send_all(data)
        except h11.LocalProtocolError as exc:
            self._discard(conn)
            raise httpx.LocalProtocolError(str(exc)) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._discard(conn)
            raise httpx.WriteError(f"connection lost while writing ({type(exc).__name__})") from None
        except BaseException:
            self._discard(conn)
            raise
        return conn

    async def _head(self, conn: _Connection, read_s: float | None) -> h11.Response:
        while True:
            event = await self._next_event(conn, read_s)
            if isinstance(event, h11.Response):
                return event
            # An h11.InformationalResponse (1xx): the real reply follows.

    async def _next_event(self, conn: _Connection, read_s: float | None) -> Any:
        """The next h11 event of the reply, reading from the stream as needed."""
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(f"the server's reply is not HTTP/1.1 ({exc})") from None
            if event is h11.NEED_DATA:
                with _fail_after(read_s, httpx.ReadTimeout, "reading the reply timed out"):
                    try:
                        data = await conn.stream.receive_some(_READ_SIZE)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                        raise httpx.ReadError(
                            f"connection lost while reading ({type(exc).__name__})"
                        ) from None
                conn.h11.receive_data(bytes(data))  # trio gives bytes: no copy
            elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("the server closed the connection mid-reply")
            else:
                return event

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
                conn.h11.start_next_cycle()
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
            tls = trio.SSLStream(
                tcp, self._tls(), server_hostname=host, https_compatible=True
            )
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

    def _release(self, origin: Origin, conn: _Connection) -> None:
        """A reply read to its end: keep the connection if both sides may go on."""
        self._busy.discard(conn)
        self._slots.release()
        if (
            not self._closed
            and conn.h11.our_state is h11.DONE
            and conn.h11.their_state is h11.DONE
        ):
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
