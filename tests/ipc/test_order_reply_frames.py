"""A submit's reply frame, written from its order's places, is msgspec's frame byte for byte."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ult_actors.ipc.framing import RequestCodec, frame
from ult_actors.messages import Leg, Order, OrderReply

_FIELDS = Order.__struct_fields__


class _Text(str):
    """A ``str`` subclass: msgspec refuses it, and so must the reply's encode."""


class _Side(enum.StrEnum):
    BUY = "buy"


# Values a place may hold across a connection's replies: equal strings as distinct
# objects, ints at each of msgpack's boundaries (and ``True`` beside ``1``), decimals equal
# in value but not in text, and kinds msgspec writes or refuses its own way.
_SHARED_DECIMAL = Decimal("190.0190")
_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    1.0,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    -(2**63),
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**64 - 1,
    1796605198602209117,
    "",
    "paper",
    "".join(["pa", "per"]),  # equal to "paper", another object
    "AAPL",
    "é",
    "x" * 31,
    "x" * 32,
    "y" * 255,
    "y" * 256,
    "z" * 65536,
    "\u2028\"\\",
    _SHARED_DECIMAL,
    Decimal("190.0190"),
    Decimal("1"),
    Decimal("1.0"),
    Decimal("1E+2"),
    Decimal("-0"),
    Decimal("NaN"),
    Leg(list_id="l-1", contingency="oco", role="take_profit", peer_id="c-2"),
    {"a": 1},
    [1, "b"],
    _Side.BUY,  # written as its value
]
# Values that msgspec cannot write: the encode must fail as msgspec's does.
_REFUSED: list[Any] = [2**64, -(2**63) - 1, "\ud800", _Text("t"), object()]


def _order(values: dict[str, Any]) -> Order:
    base: dict[str, Any] = {
        "id": "paper.1",
        "client_order_id": "c-1",
        "broker": "paper",
        "symbol": "AAPL",
        "side": "buy",
        "qty": Decimal("1"),
        "type": "market",
        "time_in_force": "day",
        "status": "filled",
    }
    base.update(values)
    return Order(**base)


def _msgspec_frame(reply: OrderReply) -> bytes:
    return frame(msgspec.msgpack.encode(reply))


def _outcome(encode: Any, reply: OrderReply) -> tuple[str, bytes | type]:
    try:
        return "frame", encode(reply)
    except Exception as exc:  # the kind of failure is what is compared
        return "raised", type(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2**40),
            st.dictionaries(
                st.sampled_from(_FIELDS),
                st.sampled_from(_VALUES) | st.sampled_from(_REFUSED),
                max_size=8,
            ),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_an_order_reply_frame_is_msgspec_s_frame_reply_after_reply(
    replies: list[tuple[int, dict[str, Any]]],
) -> None:
    # One codec, as a connection has: what one reply leaves at its places must not leak
    # into the next one's bytes (same objects, equal strings, 1 after True, 1.0 after 1,
    # Decimal("1.0") after Decimal("1")); a value msgspec refuses fails the same way.
    codec = RequestCodec()
    for request_id, values in replies:
        reply = OrderReply(id=request_id, order=_order(values))
        assert _outcome(codec.encode, reply) == _outcome(_msgspec_frame, reply)


def test_a_filled_order_s_reply_after_reply_keeps_each_one_s_own_bytes() -> None:
    # As the paper venue answers: the prices the same objects, the quantities new ones.
    codec = RequestCodec()
    for i in range(1, 300):
        qty = Decimal(i % 7 + 1)
        order = _order(
            {
                "id": f"paper.{i}",
                "client_order_id": f"c-{i}",
                "qty": qty,
                "filled_qty": qty,
                "avg_fill_price": _SHARED_DECIMAL if i % 50 else Decimal(f"{i}.25"),
                "arrival_price": _SHARED_DECIMAL,
                "arrival_source": "venue_quote",
                "created_at": 1796605198602209117 + i,
                "updated_at": 1796605198602209117 + 2 * i,
            }
        )
        reply = OrderReply(id=i * 977, order=order)
        framed = codec.encode(reply)
        assert framed == _msgspec_frame(reply)
        assert msgspec.msgpack.decode(framed[4:], type=OrderReply) == reply


def test_an_order_reply_too_big_for_a_short_header_has_its_four_byte_size() -> None:
    codec = RequestCodec()
    reply = OrderReply(id=1, order=_order({"reject_reason": "r" * 70_000}))
    assert codec.encode(reply) == _msgspec_frame(reply)
    small = OrderReply(id=2, order=_order({}))
    assert codec.encode(small) == _msgspec_frame(small)


@pytest.mark.parametrize("value", _REFUSED)
def test_a_value_msgspec_refuses_fails_the_reply_s_encode_as_msgspec_s(value: Any) -> None:
    reply = OrderReply(id=1, order=_order({"symbol": value}))
    with pytest.raises(Exception) as ours:
        RequestCodec().encode(reply)
    with pytest.raises(Exception) as theirs:
        msgspec.msgpack.encode(reply)
    assert type(ours.value) is type(theirs.value)


# Values equal to each other in Python but written differently (or equal and written the
# same, as distinct objects): any one after any other, at every place.
_CONFUSABLE: list[Any] = [
    True,
    1,
    1.0,
    False,
    0,
    None,
    Decimal("1"),
    Decimal("1.0"),
    Decimal("1"),
    "1",
    "".join(["", "1"]),
    _Side.BUY,
    "buy",
]


@pytest.mark.parametrize("field", _FIELDS)
def test_every_place_writes_each_value_after_any_other_as_its_own(field: str) -> None:
    codec = RequestCodec()
    for before in _CONFUSABLE:
        for value in _CONFUSABLE:
            for reply in (
                OrderReply(id=1, order=_order({field: before})),
                OrderReply(id=2, order=_order({field: value})),
            ):
                assert codec.encode(reply) == _msgspec_frame(reply), (field, before, value)


def test_a_mutable_value_changed_in_place_is_written_as_it_now_is() -> None:
    codec = RequestCodec()
    held: dict[str, Any] = {"a": 1}
    listed: list[Any] = [1]
    reply = OrderReply(id=1, order=_order({"reject_reason": held, "leg": listed}))
    assert codec.encode(reply) == _msgspec_frame(reply)
    held["a"] = 2
    listed.append("more")
    assert codec.encode(reply) == _msgspec_frame(reply)


def test_a_reply_that_fails_half_way_leaves_the_next_ones_their_own_bytes() -> None:
    # The failing reply wrote a new symbol at its place before a value msgspec refuses;
    # the next reply, differing from the first only by that symbol, must carry it.
    codec = RequestCodec()
    for request_id in (1, 2):  # the second differs from the first at its quantity only
        first = OrderReply(id=request_id, order=_order({}))
        assert codec.encode(first) == _msgspec_frame(first)
    with pytest.raises(TypeError):
        codec.encode(OrderReply(id=2, order=_order({"symbol": "MSFT", "leg": object()})))
    for request_id in (3, 4):
        after = OrderReply(id=request_id, order=_order({"symbol": "MSFT"}))
        assert codec.encode(after) == _msgspec_frame(after)
