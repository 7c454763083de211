"""Hypothesis sends every request type, with hostile values in every field, to a
running ``ult serve`` through its socket.

Decimal fields get text from the whole range Python's ``Decimal`` reads and more
(huge and tiny exponents, NaN, sNaN, Infinity, -0, hundreds of digits,
underscores, spaces, other scripts' digits). Every answer must be a result or a
named error other than ``internal``, and after every example the health tree
must show no actor restarted: no value reaches an actor that can crash on it.
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
from ult_actors.messages import (
    ErrorReply,
    EventMessage,
    GetHealth,
    HealthReply,
    Reply,
    SetTradingState,
    SubscriptionDropped,
)
from ult_actors.testing.process import UltProcess

REQUEST_ID = 7
CHECK_ID = 8


@pytest.fixture(scope="module")
def service() -> Iterator[UltProcess]:
    svc = UltProcess.serve().start()
    yield svc
    log = svc.log
    svc.cleanup()
    assert "Traceback" not in log and "actor exited; restarting" not in log


_decimal_text = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.builds("{}e{}".format, st.integers(-(10**6), 10**6), st.integers(-(10**10), 10**10)),
    st.builds(
        "{}.{}".format,
        st.text("0123456789", min_size=1, max_size=200),
        st.text("0123456789", max_size=200),
    ),
    st.sampled_from(
        [
            "1e999999999",
            "1E-999999999",
            "NaN",
            "sNaN",
            "-NaN",
            "Infinity",
            "-Inf",
            "-0",
            "0",
            "0.0",
            "1_0",
            " 10",
            "10 ",
            "\t1",
            "+5",
            "1.",
            ".5",
            "\u0661",
            "1e1",
            "0.000000001",
            "0.0000000001",
            "999999999999.999999999",
            "1000000000000",
            "1" * 400,
            "",
        ]
    ),
    st.text(max_size=12),
)
_text = st.one_of(
    st.sampled_from(["AAPL", "EUR_USD", "paper", "x", "", "ult-1"]),
    st.text(max_size=40),
    st.text(min_size=100, max_size=300),
)
_int = st.integers(-(2**63), 2**64 - 1)
_maybe = st.none() | _text

_order = st.fixed_dictionaries(
    {
        "symbol": st.sampled_from(["AAPL", "MSFT", "EUR_USD"]) | _text,
        "side": st.sampled_from(["buy", "sell"]),
        "qty": _decimal_text,
    },
    optional={
        "type": st.sampled_from(["market", "limit", "stop", "stop_limit"]),
        "limit_price": _decimal_text,
        "stop_price": _decimal_text,
        "time_in_force": st.sampled_from(["day", "gtc", "ioc", "fok", "opg", "cls"]),
        "extended_hours": st.booleans(),
        "broker": _maybe,
        "client_order_id": _maybe,
        "deadline_ns": _int,
    },
)


def _request(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"kind": st.just(kind), "id": st.just(REQUEST_ID)}, optional=fields
    )


_submit = st.fixed_dictionaries(
    {"kind": st.just("submit"), "id": st.just(REQUEST_ID), "order": _order}
)
# Every other request type, each field drawn from hostile values of its type.
_others = st.one_of(
    _request("cancel", order_id=_text).filter(lambda r: "order_id" in r),
    _request("get_order", order_id=_text).filter(lambda r: "order_id" in r),
    _request("list_orders", open_only=st.booleans(), broker=_maybe, limit=_int),
    _request("get_positions", broker=_maybe),
    _request("get_account", broker=_maybe),
    _request("get_health"),
    _request("kill_switch", on=st.booleans()).filter(lambda r: "on" in r),
    _request(
        "trading_state", state=st.sampled_from(["active", "reducing", "halted"]), broker=_maybe
    ).filter(lambda r: "state" in r),
    _request("close_position", symbol=_text, broker=_maybe).filter(lambda r: "symbol" in r),
    _request("flatten", broker=_maybe),
    _request(
        "subscribe",
        topics=st.lists(st.sampled_from(["orders", "fills", "health", "positions", "risk"])),
    ),
    _request("ping"),
)


class _Conn:
    def __init__(self, svc: UltProcess) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(svc.socket))
        self.codec, self.frames = ReplyCodec(), FrameReader(64 << 20)
        self.ready: list[bytes] = []

    def reply_to(self, request_id: int) -> Reply:
        """The answer to ``request_id``, skipping pushed events."""
        while True:
            while not self.ready:
                data = self.sock.recv(1 << 16)
                assert data, "the service closed the connection"
                self.ready.extend(self.frames.feed(data))
            reply = self.codec.decode(self.ready.pop(0))
            if not isinstance(reply, EventMessage | SubscriptionDropped) and reply.id == request_id:
                return reply


def _exchange(svc: UltProcess, request: dict[str, Any]) -> None:
    """Send ``request``; its answer must not be ``internal``, and no actor may have restarted."""
    conn = _Conn(svc)
    try:
        conn.sock.sendall(frame(msgspec.msgpack.encode(request)))
        reply = conn.reply_to(REQUEST_ID)
        if isinstance(reply, ErrorReply):
            assert reply.error.code != "internal", (request, reply.error)
        # Put trading back, so later examples reach risk's arithmetic again.
        conn.sock.sendall(conn.codec.encode(SetTradingState(id=CHECK_ID, state="active")))
        conn.reply_to(CHECK_ID)
        conn.sock.sendall(conn.codec.encode(GetHealth(id=CHECK_ID)))
        health = conn.reply_to(CHECK_ID)
        assert isinstance(health, HealthReply)
        restarted = {a.name: a.restarts for a in health.health.actors if a.restarts}
        assert restarted == {}, request
    finally:
        conn.sock.close()


#: Each example is three round trips to a real process: no per-example deadline.
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# (``wait`` is left out: a resting order would hold the answer until it is final.)
@settings(FUZZ, max_examples=200)
@given(request=_submit)
def test_hostile_values_in_a_submit_get_an_answer_and_crash_no_actor(
    service: UltProcess, request: dict[str, Any]
) -> None:
    _exchange(service, request)


@settings(FUZZ, max_examples=100)
@given(request=_others)
def test_hostile_values_in_every_other_request_get_an_answer_and_crash_no_actor(
    service: UltProcess, request: dict[str, Any]
) -> None:
    _exchange(service, request)
