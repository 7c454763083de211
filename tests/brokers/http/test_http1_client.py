"""The REST brokers' HTTP client against a real TCP server on 127.0.0.1: keep-alive, loss, timeouts.

The server runs in the test's own trio loop (so ``autojump_clock`` can
stand in for the seconds a timeout waits) and answers as each test's
handler says, parsing requests with h11 as the broker simulators do.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h11
import httpx
import pytest
import trio
import trio.testing

from ult_actors.brokers.http.http1_client import Http1Client


@dataclass
class Seen:
    """What the server saw: connections accepted, and each request's target and body."""

    connections: int = 0
    requests: list[tuple[str, bytes]] = field(default_factory=list)


#: Answers one parsed request on ``stream``; returns False to hang up afterwards.
Handler = Callable[[trio.abc.Stream, h11.Connection, h11.Request, bytes], Awaitable[bool]]


async def _read_request(
    stream: trio.abc.Stream, conn: h11.Connection
) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data:
                return None
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            return request, body
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def reply(
    stream: trio.abc.Stream, conn: h11.Connection, body: bytes, status: int = 200
) -> None:
    """A whole reply with a Content-Length."""
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
    data += (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
    await stream.send_all(data)


async def echo(
    stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes
) -> bool:
    await reply(stream, conn, b'{"target": "' + request.target + b'", "body": "' + body + b'"}')
    return True


@asynccontextmanager
async def serving(
    handler: Handler, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[str, Seen]]:
    """A server on a free loopback port (HTTPS with ``tls``); yields its base URL and what it saw."""
    seen = Seen()

    async def one_connection(tcp: trio.SocketStream) -> None:
        seen.connections += 1
        conn = h11.Connection(h11.SERVER)
        stream: trio.abc.Stream = tcp
        if tls is not None:
            stream = trio.SSLStream(tcp, tls, server_side=True, https_compatible=True)
        async with stream:
            while True:
                got = await _read_request(stream, conn)
                if got is None:
                    return
                request, body = got
                seen.requests.append((request.target.decode(), body))
                if not await handler(stream, conn, request, body):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, one_connection, 0, host=host))
        port = listeners[0].socket.getsockname()[1]
        named = f"[{host}]" if ":" in host else host
        yield f"{'https' if tls else 'http'}://{named}:{port}", seen
        nursery.cancel_scope.cancel()


def client(
    base_url: str, *, max_connections: int = 4, trust: ssl.SSLContext | None = None
) -> Http1Client:
    return Http1Client(
        base_url=base_url,
        headers={"X-Key": "k"},
        timeout=httpx.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0),
        max_connections=max_connections,
        ssl_context=trust,
    )


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by the openssl tool."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_requests_one_after_another_share_one_kept_alive_connection() -> None:
    async with serving(echo) as (url, seen):
        http = client(url)
        for i in range(5):
            response = await http.request(
                "POST", "/v2/orders", content=f"o{i}".encode(), headers={"X-N": str(i)}
            )
            assert response.status_code == 200 and response.is_success
            assert response.json() == {"target": "/v2/orders", "body": f"o{i}"}
        response = await http.request(
            "GET", "/v2/orders", params={"status": "open", "after": "a+b"}
        )
        assert response.json()["target"] == "/v2/orders?status=open&after=a%2Bb"
        await http.aclose()
    assert seen.connections == 1
    assert len(seen.requests) == 6


async def test_an_idle_connection_the_server_closed_is_replaced_without_failing_a_request() -> None:
    async def answer_then_hang_up(
        stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        await reply(stream, conn, b"{}")
        return False  # closes without saying so in the reply, as an idle timeout would

    async with serving(answer_then_hang_up) as (url, seen):
        http = client(url)
        for _ in range(3):
            assert (await http.request("GET", "/v2/account")).status_code == 200
            await trio.testing.wait_all_tasks_blocked()  # the server's hang-up has landed
        await http.aclose()
    assert seen.connections == 3
    assert len(seen.requests) == 3


async def test_a_connection_lost_mid_request_fails_that_request_once_and_the_next_one_works() -> (
    None
):
    drops = [True]

    async def drop_the_first(
        stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        if drops and drops.pop():
            return False  # read the order, then hang up without a word
        await reply(stream, conn, b"{}")
        return True

    async with serving(drop_the_first) as (url, seen):
        http = client(url)
        with pytest.raises(httpx.RemoteProtocolError):
            await http.request("POST", "/v2/orders", content=b"first")
        assert seen.requests == [("/v2/orders", b"first")]  # sent once, never resent
        assert (await http.request("POST", "/v2/orders", content=b"second")).status_code == 200
        await http.aclose()
    assert seen.connections == 2


async def test_a_server_that_never_answers_is_a_read_timeout(autojump_clock: object) -> None:
    async def never(
        stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        await trio.sleep_forever()
        return False

    async with serving(never) as (url, _seen):
        http = client(url)
        started = trio.current_time()
        with pytest.raises(httpx.ReadTimeout):
            await http.request("GET", "/v2/account")
        assert trio.current_time() - started == pytest.approx(10.0)  # the read timeout
        await http.aclose()


async def test_all_connections_busy_past_the_pool_timeout_is_a_pool_timeout(
    autojump_clock: object,
) -> None:
    release = trio.Event()

    async def held(
        stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        await release.wait()
        await reply(stream, conn, b"{}")
        return True

    async with serving(held) as (url, _seen), trio.open_nursery() as nursery:
        http = client(url, max_connections=1)
        first: list[int] = []

        async def hold_the_only_connection() -> None:
            first.append((await http.request("GET", "/slow")).status_code)

        nursery.start_soon(hold_the_only_connection)
        await trio.testing.wait_all_tasks_blocked()
        started = trio.current_time()
        with pytest.raises(httpx.PoolTimeout):
            await http.request("GET", "/v2/account")
        assert trio.current_time() - started == pytest.approx(5.0)  # the pool timeout
        release.set()
    assert first == [200]
    await http.aclose()


async def test_nothing_listening_is_a_connect_error() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        http = client(f"http://127.0.0.1:{port}")
        with pytest.raises(httpx.ConnectError):
            await http.request("GET", "/v2/account")
        await http.aclose()


async def test_a_streamed_reply_arrives_line_by_line_and_ends_when_the_pool_closes() -> None:
    second_line = trio.Event()

    async def feed(
        stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        head = h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked")])
        await stream.send_all(conn.send(head) or b"")
        await stream.send_all(conn.send(h11.Data(data=b'{"n": 1}\n{"n"')) or b"")
        await second_line.wait()
        await stream.send_all(conn.send(h11.Data(data=b": 2}\n")) or b"")
        await trio.sleep_forever()  # a stream stays open until one side hangs up
        return False

    async with serving(feed) as (url, _seen):
        http = client(url)
        lines: list[str] = []
        with pytest.raises(httpx.ReadError):
            async with http.stream("GET", "/stream", timeout=httpx.Timeout(5.0, read=None)) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    lines.append(line)
                    if len(lines) == 1:
                        second_line.set()
                    else:
                        await http.aclose()  # the connector disconnecting
        assert lines == ['{"n": 1}', '{"n": 2}']


async def test_https_keeps_one_verified_connection_for_requests_in_a_row(
    certificate: tuple[Path, Path],
) -> None:
    async with serving(echo, tls=server_tls(certificate)) as (url, seen):
        http = client(url, trust=ssl.create_default_context(cafile=certificate[0]))
        for i in range(3):
            response = await http.request("POST", "/v2/orders", content=f"o{i}".encode())
            assert response.json() == {"target": "/v2/orders", "body": f"o{i}"}
            # TLS 1.3 session tickets arrive after the handshake: read, not taken for a hang-up.
            await trio.testing.wait_all_tasks_blocked()
        await http.aclose()
    assert seen.connections == 1


async def test_https_to_a_certificate_nobody_vouches_for_is_refused_before_anything_is_sent(
    certificate: tuple[Path, Path],
) -> None:
    async with serving(echo, tls=server_tls(certificate)) as (url, seen):
        http = client(url)  # the public CA bundle: a self-signed certificate is not in it
        with pytest.raises(httpx.ConnectError, match="TLS handshake failed"):
            await http.request("POST", "/v2/orders", content=b"secret order")
        await http.aclose()
    assert seen.requests == []


async def test_an_ipv6_literal_is_reached_and_named_in_brackets_in_the_host_header() -> None:
    async def host_back(
        stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        host = dict(request.headers)[b"host"]
        await reply(stream, conn, b'{"host": "' + host + b'"}')
        return True

    async with serving(host_back, host="::1") as (url, _seen):
        http = client(url)
        response = await http.request("GET", "/v2/account")
        await http.aclose()
    assert response.json() == {"host": url.removeprefix("http://")}
    assert response.json()["host"].startswith("[::1]:")


async def test_a_100_continue_then_a_chunked_reply_is_read_as_the_one_reply() -> None:
    async def continue_then_chunks(
        stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        await stream.send_all(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b'6\r\n{"id":\r\n5\r\n "a"}\r\n0\r\n\r\n'
        )
        return False  # written by hand: h11's server side knows nothing of it

    async with serving(continue_then_chunks) as (url, _seen):
        http = client(url)
        response = await http.request("POST", "/v2/orders", content=b"{}")
        assert response.status_code == 201
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"id": "a"}
        await http.aclose()


async def test_a_reply_ended_by_the_servers_close_is_read_whole_and_not_kept() -> None:
    async def until_close(
        stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        await stream.send_all(b'HTTP/1.1 200 OK\r\n\r\n{"all": ')
        await stream.send_all(b'"of it"}')
        return False  # hanging up ends the body

    async with serving(until_close) as (url, seen):
        http = client(url)
        for _ in range(2):
            assert (await http.request("GET", "/v2/account")).json() == {"all": "of it"}
        await http.aclose()
    assert seen.connections == 2


async def test_a_header_or_target_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with serving(echo) as (url, seen):
        http = client(url)
        with pytest.raises(httpx.LocalProtocolError):
            await http.request("GET", "/v2/account", headers={"X-Evil": "a\r\nX-More: b"})
        with pytest.raises(httpx.LocalProtocolError):
            await http.request("GET", "/v2/account HTTP/1.1\r\nX: y")
        with pytest.raises(httpx.LocalProtocolError):
            Http1Client(headers={"Bad Name": "v"}, timeout=httpx.Timeout(1.0), max_connections=1)
        await http.aclose()
    assert seen.connections == 0
