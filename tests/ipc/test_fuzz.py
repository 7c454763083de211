"""Hypothesis throws bytes and well-framed garbage at the real service's socket.

After every example the service must still be running and answer a valid
request: on the same connection when the garbage was well framed (bad frames
cost an error reply, never the connection), on a new one after raw bytes
(which may leave a frame half-read or announce an oversize one).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ult_actors.ipc.framing import FrameReader, ReplyCodec, frame
from ult_actors.messages import ErrorReply, EventMessage, Ping, SubscriptionDropped
from ult_actors.testing.process import UltProcess

KINDS = ["submit", "cancel", "get_order", "list_orders", "get_positions", "get_account",
         "get_health", "subscribe", "ping", "nonsense", ""]  # fmt: skip
PING_ID = 2**31


@pytest.fixture(scope="module")
def service() -> Iterator[UltProcess]:
    svc = UltProcess.serve().start()
    yield svc
    log = svc.log
    svc.cleanup()
    # Garbage is the client's fault: answered, never a crash of a connection task.
    assert "connection failed" not in log and "Traceback" not in log


def _values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )  # fmt: skip


# Request-shaped maps: a real or bogus kind, an id, and random fields, some real.
_requestish = st.fixed_dictionaries(
    {"kind": st.sampled_from(KINDS), "id": st.integers(-5, 2**40)},
    optional={
        "order": st.dictionaries(st.sampled_from(["symbol", "side", "qty", "type", "limit_price"]), _values(), max_size=5),
        "order_id": _values(),
        "open_only": _values(),
        "topics": _values(),
        "zzz": _values(),
    },
).map(msgspec.msgpack.encode)  # fmt: skip

_payloads = st.binary(max_size=300) | _values().map(msgspec.msgpack.encode) | _requestish


def _connect(svc: UltProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(svc.socket))
    return sock


def _read_until_ping(sock: socket.socket) -> None:
    codec, frames = ReplyCodec(), FrameReader(64 << 20)
    while True:
        data = sock.recv(1 << 16)
        assert data, "the service closed a connection that only carried well-framed frames"
        for payload in frames.feed(data):
            reply = codec.decode(payload)
            if isinstance(reply, EventMessage | SubscriptionDropped):
                continue
            if isinstance(reply, ErrorReply):
                assert reply.error.code != "internal", reply.error.message
            if reply.id == PING_ID:
                return


def _ping(sock: socket.socket) -> None:
    sock.sendall(ReplyCodec().encode(Ping(id=PING_ID)))
    _read_until_ping(sock)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(_payloads, min_size=1, max_size=8))
def test_well_framed_garbage_is_answered_and_the_connection_keeps_working(
    service: UltProcess, garbage: list[bytes]
) -> None:
    with _connect(service) as sock:
        sock.sendall(b"".join(frame(p) for p in garbage))
        _ping(sock)
    assert service.alive


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=4096))
def test_random_bytes_never_take_the_service_down(service: UltProcess, data: bytes) -> None:
    with _connect(service) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(1 << 16):  # the service answers what it can, then closes
            pass
    assert service.alive
    with _connect(service) as sock:
        _ping(sock)
