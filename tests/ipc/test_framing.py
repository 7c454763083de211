"""Frames and codecs: cut a byte stream into requests, say exactly what is wrong with bad ones."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from ult_actors.errors import BadRequest
from ult_actors.ipc.framing import FrameReader, FrameTooLarge, ReplyCodec, RequestCodec, frame
from ult_actors.messages import OkReply, OrderRequest, Ping, Submit


def test_frames_split_across_reads_and_packed_into_one_read_are_both_cut_right() -> None:
    payloads = [b"a", b"", b"x" * 70_000, b"last"]
    stream = b"".join(frame(p) for p in payloads)
    reader = FrameReader()
    got = []
    for i in range(0, len(stream), 7):  # dribbled in small pieces
        got.extend(reader.feed(stream[i : i + 7]))
    assert got == payloads
    assert list(FrameReader().feed(stream)) == payloads  # all in one read
    assert reader.buffered == 0


def test_a_header_over_the_limit_is_refused_before_its_body_arrives() -> None:
    reader = FrameReader(max_frame_bytes=1024)
    with pytest.raises(FrameTooLarge, match="frame of 1025 bytes exceeds the limit of 1024"):
        list(reader.feed((1025).to_bytes(4, "big")))


def test_requests_round_trip_with_decimals_exact() -> None:
    server, client = RequestCodec(), ReplyCodec()
    request = Submit(
        id=7, order=OrderRequest(symbol="AAPL", side="buy", qty=Decimal("0.1"), type="limit",
                                 limit_price=Decimal("187.50")),
    )  # fmt: skip
    (payload,) = FrameReader().feed(client.encode(request))
    assert server.decode(payload) == request
    (payload,) = FrameReader().feed(server.encode(OkReply(id=7, detail="x")))
    assert client.decode(payload) == OkReply(id=7, detail="x")


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"\xc1", "not valid msgpack"),
        (msgspec.msgpack.encode({"kind": "launch_rockets", "id": 3}), "Invalid value 'launch_rockets' - at `$.kind`"),
        (msgspec.msgpack.encode({"kind": "submit", "id": 4}), "missing required field `order`"),
        (msgspec.msgpack.encode({"kind": "submit", "id": 5, "order": {"symbol": "A", "side": "up", "qty": "1"}}), "at `$.order.side`"),
        (msgspec.msgpack.encode([1, 2, 3]), "Expected `object`"),
    ],
)  # fmt: skip
def test_a_bad_request_names_what_was_wrong_and_keeps_its_id(payload: bytes, says: str) -> None:
    codec = RequestCodec()
    with pytest.raises(BadRequest) as info:
        codec.decode(payload)
    assert says in info.value.message
    if isinstance(msgspec.msgpack.decode(payload) if payload != b"\xc1" else None, dict):
        assert codec.request_id(payload) == msgspec.msgpack.decode(payload)["id"]
    assert codec.request_id(b"\xc1") == 0
    assert codec.request_id(msgspec.msgpack.encode(Ping(id=9))) == 9


def test_a_consumer_that_stops_early_gets_the_rest_on_the_next_feed() -> None:
    reader = FrameReader()
    batch = reader.feed(b"".join(frame(b"p%d" % i) for i in range(3)))
    assert next(batch) == b"p0"
    batch.close()  # stopped at a limit: p0 is taken, p1 and p2 wait
    assert list(reader.feed(b"")) == [b"p1", b"p2"]


def test_take_hands_out_a_frame_a_call_and_keeps_a_part_for_the_next_add() -> None:
    reader = FrameReader(max_frame_bytes=16)
    first, second = frame(b"one"), frame(b"two")
    reader.add(first + second[:5])  # a whole frame and a header with a byte of body
    assert reader.take() == b"one"
    assert reader.take() is None
    assert reader.buffered == 5
    reader.add(second[5:] + (17).to_bytes(4, "big"))
    assert reader.take() == b"two"
    with pytest.raises(FrameTooLarge, match="frame of 17 bytes"):
        reader.take()


def test_a_header_is_read_as_four_big_endian_bytes() -> None:
    reader = FrameReader(max_frame_bytes=1 << 30)
    reader.add(bytes([1, 2, 3, 4]))
    with pytest.raises(FrameTooLarge, match="frame of 16909060 bytes"):
        FrameReader().feed(bytes([1, 2, 3, 4])).__next__()
    assert reader.take() is None  # 0x01020304 bytes announced, none of them here yet
    assert reader.buffered == 4


def test_replies_encoded_one_after_another_are_each_their_own_whole_frame() -> None:
    # One codec keeps a buffer between replies: a short reply after a long one, and one
    # past what it keeps, are each exactly their own payload's frame, and stay so.
    codec = RequestCodec()
    replies = [
        OkReply(id=1, detail="x" * 300),
        OkReply(id=2, detail="y"),
        OkReply(id=3, detail="z" * 100_000),
        OkReply(id=4, detail=""),
    ]
    framed = [codec.encode(reply) for reply in replies]
    assert framed == [frame(msgspec.msgpack.encode(reply)) for reply in replies]


def test_a_frame_split_across_reads_is_joined_with_the_next_read_s_frames() -> None:
    reader = FrameReader()
    stream = b"".join(frame(b"p%d" % i) for i in range(4))
    cut = len(frame(b"p0")) + 3  # the second frame's header, cut after three bytes
    reader.add(stream[:cut])
    assert reader.take() == b"p0"
    assert reader.take() is None
    assert reader.buffered == 3
    reader.add(stream[cut:])
    assert [reader.take(), reader.take(), reader.take(), reader.take()] == [
        b"p1", b"p2", b"p3", None
    ]
    assert reader.buffered == 0


def test_a_big_frame_sent_in_pieces_is_gathered_whole_and_what_follows_cut_as_usual() -> None:
    big = bytes(range(256)) * 64  # 16 KiB: over what is joined read by read
    stream = frame(big) + frame(b"after")
    reader = FrameReader()
    got: list[bytes] = []
    for i in range(0, len(stream), 1000):
        piece = stream[i : i + 1000]
        reader.add(piece)
        while (payload := reader.take()) is not None:
            got.append(payload)
        # Nothing received is lost or counted twice while the frame is gathered.
        assert reader.buffered == min(i + 1000, len(stream)) - sum(len(frame(p)) for p in got)
    assert got == [big, b"after"]


def test_a_payload_is_its_own_bytes_whatever_the_caller_does_with_the_buffer_it_added() -> None:
    reader = FrameReader()
    buf = bytearray(frame(b"one") + frame(b"two"))
    reader.add(buf)
    buf[:] = b"\x00" * len(buf)  # the caller reuses its buffer for the next read
    assert [reader.take(), reader.take()] == [b"one", b"two"]
    view = memoryview(bytearray(frame(b"three")))
    reader.add(view)
    view[4:] = b"xxxxx"
    assert reader.take() == b"three"
