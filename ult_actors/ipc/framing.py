"""Frames on the IPC socket: a 4-byte big-endian length, then that many bytes of msgpack.

The payload is one ``Request`` (client to server) or one ``Reply`` (server
to client), msgspec-encoded from the tagged unions in ``ult_actors.messages``.
``FrameReader`` cuts a byte stream into payloads without copying more than it
must; a header announcing more than the size limit raises ``FrameTooLarge``
before any of the body is buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from decimal import Decimal
from typing import Final, cast

import msgspec
from msgspec.structs import astuple

from ult_actors.errors import BadRequest
from ult_actors.messages import Order, OrderReply, Reply, Request

HEADER = struct.Struct(">I")
#: ``HEADER.size``, a constant compiled code reads without an attribute lookup.
_HEADER_SIZE: Final = 4
DEFAULT_MAX_FRAME_BYTES = 1 << 20
#: What a frame's header can announce at most.
_MAX_HEADER_SIZE: Final = 0xFFFFFFFF
#: A reply's buffer grown past this is let go after its frame is made: a connection
#: keeps its buffer between replies, but not one a rare huge reply grew.
_KEPT_BUFFER_BYTES: Final = 1 << 16
#: An unfinished frame up to this size (its header with it) is joined to the next read's
#: bytes; a bigger one is gathered in a ``bytearray`` (``FrameReader``): a client sending
#: it in small pieces costs each piece at most this much copied.
_JOIN_LIMIT: Final = 4096


class FrameTooLarge(Exception):
    """A frame header announced more bytes than the limit allows."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class FrameReader:
    """Accumulates received bytes and hands out complete frame payloads.

    ``add`` then ``take`` until it returns ``None`` is the server's way, a call each
    and no generator per read (a generator's run and close cost a lone request ~5k
    instructions compiled); ``feed`` does both for a ``for`` loop.

    The bytes are cut from an immutable ``bytes`` (a read's own, when it ends on a
    frame's end, as a pipelining client's reads mostly do): compiled, a header's four
    bytes are read and a payload sliced natively, where a ``bytearray``'s went through
    Python's generic item and slice calls and copied each payload twice (~1.6k
    instructions a frame). What a read leaves of an unfinished frame is joined to the
    next read's bytes; a frame over ``_JOIN_LIMIT`` is gathered in a ``bytearray``
    instead, so one sent in many small pieces costs each piece its own bytes, not a
    copy of all before it.
    """

    __slots__ = ("_buf", "_gathered", "_gathered_size", "_start", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        #: The bytes received and not yet cut, from ``_start`` on.
        self._buf = b""
        #: Where the first frame not yet taken begins in ``_buf``.
        self._start = 0
        #: An unfinished frame over ``_JOIN_LIMIT`` (its header first), gathered here
        #: until it has ``_gathered_size`` bytes.
        self._gathered: bytearray | None = None
        self._gathered_size = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame taken."""
        gathered = self._gathered
        return len(self._buf) - self._start + (0 if gathered is None else len(gathered))

    def add(self, data: bytes | bytearray | memoryview) -> None:
        """Add ``data`` after the bytes buffered; ``take`` hands out its frames."""
        gathered = self._gathered
        if gathered is not None:
            gathered += data
            if len(gathered) < self._gathered_size:
                return
            self._gathered = None
            self._buf = bytes(gathered)
        elif self._start < len(self._buf):  # an unfinished frame: joined to the new bytes
            self._buf = self._buf[self._start :] + data
        else:
            self._buf = bytes(data)  # ``bytes`` (a socket's read): the same object, no copy
        self._start = 0

    def take(self) -> bytes | None:
        """The next complete payload, or ``None`` until more bytes are added.

        Raises ``FrameTooLarge`` when the next header announces more than the limit.
        """
        buf = self._buf
        start = self._start
        left = len(buf) - start
        if left >= _HEADER_SIZE:
            # ``HEADER.unpack_from``'s value, read byte by byte: compiled, a native int
            # without a method call and a tuple (~1k instructions a frame less).
            size = (
                (buf[start] << 24) | (buf[start + 1] << 16) | (buf[start + 2] << 8) | buf[start + 3]
            )
            if size > self.max_frame_bytes:
                raise FrameTooLarge(size, self.max_frame_bytes)
            body = start + _HEADER_SIZE
            end = body + size
            if end <= len(buf):
                self._start = end
                return buf[body:end]
            if size + _HEADER_SIZE > _JOIN_LIMIT:  # big: gathered, not joined read by read
                self._gathered = bytearray(buf[start:])
                self._gathered_size = size + _HEADER_SIZE
                self._buf = b""
                self._start = 0
        elif start and not left:  # every frame taken: the read's bytes are let go
            self._buf = b""
            self._start = 0
        return None

    def feed(self, data: bytes | bytearray | memoryview) -> Generator[bytes, None, None]:
        """Add ``data``; yield each payload now complete, in order (those not taken
        when the consumer stops stay buffered for the next ``feed``)."""
        self.add(data)
        while (payload := self.take()) is not None:
            yield payload


def frame(payload: bytes) -> bytes:
    """``payload`` with its length header."""
    return HEADER.pack(len(payload)) + payload


#: Every byte as its own ``bytes``: a frame's header and a short string's are taken from
#: here, not built.
_BYTES: Final = tuple(bytes((i,)) for i in range(256))
# Module constants, so compiled code reads them as C statics.
_ORDER_REPLY: Final = OrderReply
_ORDER: Final = Order
_DECIMAL: Final = Decimal
_ASTUPLE: Final = astuple
# msgpack's int forms, each its marker and its bytes in one call (``int.to_bytes`` and a
# join cost ~600 instructions compiled).
_PACK_U8: Final = struct.Struct(">BB").pack
_PACK_U16: Final = struct.Struct(">BH").pack
_PACK_U32: Final = struct.Struct(">BI").pack
_PACK_U64: Final = struct.Struct(">BQ").pack
_PACK_I8: Final = struct.Struct(">Bb").pack
_PACK_I16: Final = struct.Struct(">Bh").pack
_PACK_I32: Final = struct.Struct(">Bi").pack
_PACK_I64: Final = struct.Struct(">Bq").pack


def _str_bytes(text: str) -> bytes:
    """``text`` as msgpack (and msgspec) writes a string: its UTF-8 bytes after the
    smallest header that holds their length."""
    data = text.encode()
    size = len(data)
    if size < 32:
        return _BYTES[0xA0 | size] + data
    if size < 0x100:
        return _PACK_U8(0xD9, size) + data
    if size < 0x10000:
        return _PACK_U16(0xDA, size) + data
    return _PACK_U32(0xDB, size) + data  # struct.error past 4 GiB


def _int_bytes(value: int) -> bytes:
    """``value`` as msgspec writes an int: the smallest of msgpack's forms that holds it
    (``struct.error`` outside of what msgpack holds, where msgspec raises)."""
    if value >= 0:
        if value < 0x80:
            return _BYTES[value]
        if value < 0x100:
            return _PACK_U8(0xCC, value)
        if value < 0x10000:
            return _PACK_U16(0xCD, value)
        if value < 0x100000000:
            return _PACK_U32(0xCE, value)
        return _PACK_U64(0xCF, value)
    if value >= -32:
        return _BYTES[value & 0xFF]
    if value >= -0x80:
        return _PACK_I8(0xD0, value)
    if value >= -0x8000:
        return _PACK_I16(0xD1, value)
    if value >= -0x80000000:
        return _PACK_I32(0xD2, value)
    return _PACK_I64(0xD3, value)


def _map_header(size: int) -> bytes:
    """A msgpack map's header for ``size`` pairs."""
    if size < 16:
        return _BYTES[0x80 | size]
    if size < 0x10000:
        return _PACK_U16(0xDE, size)
    return _PACK_U32(0xDF, size)


def _order_shape() -> tuple[str, ...]:
    """The keys an ``OrderReply``'s order is written with, checked to be written as
    ``_OrderFrames`` writes them: a map of every field in turn, the reply a map of its
    tag, ``id`` and ``order``."""
    order, reply = Order.__struct_config__, OrderReply.__struct_config__
    if (
        order.array_like
        or order.omit_defaults
        or order.tag_field is not None
        or reply.array_like
        or reply.omit_defaults
        or (reply.tag_field, reply.tag) != ("kind", "order")
        or OrderReply.__struct_encode_fields__ != ("id", "order")
    ):
        raise RuntimeError("Order or OrderReply changed shape: update ipc/framing.py's _OrderFrames")
    return Order.__struct_encode_fields__


_ORDER_KEYS: Final = _order_shape()
#: An order reply's bytes up to its request id, and from it to its order's first key.
_REPLY_HEAD: Final = _map_header(3) + _str_bytes("kind") + _str_bytes("order") + _str_bytes("id")
_ORDER_HEAD: Final = _str_bytes("order") + _map_header(len(_ORDER_KEYS))
#: A frame's size and the reply's bytes up to its request id, in one call.
_PACK_FRAME_HEAD: Final = struct.Struct(f">I{len(_REPLY_HEAD)}s").pack
#: No value yet at a place (not any value an order can hold).
_NOTHING: Final = object()


class _OrderFrames:
    """Writes an ``OrderReply``'s frame as msgspec would, byte for byte, from what the
    replies before it on the connection had in common with it.

    A submit's reply is the wire's 24-key map of its order, and msgspec wrote every key
    and every value anew, the decimals through their ``str`` (~600 instructions each, four
    in a filled order). Most of an order's values are those of the order before it: its
    broker, symbol, side, type, status, the ``None``s, the fill and arrival prices (the
    venue's same objects until the price moves). So each place keeps its last value and
    that value's bytes; a value that is the same object, or an equal exact ``str``, is
    the same bytes. The places that differ from the last reply's (its ids, quantity and
    times, as a rule) are encoded here: exact ``str``, ``int``, ``bool``, ``None`` and
    ``Decimal`` as msgspec does (a decimal's text also kept for the next place holding the
    same object, as ``filled_qty`` holds ``qty``'s), any other type by msgspec itself,
    and only the immutable kinds are kept. The bytes between those places (their keys
    with them) are joined once for each set of places that differ, and kept while the
    next replies differ at the same places: a reply is then about a dozen parts joined.
    """

    __slots__ = (
        "_decimal",
        "_decimal_bytes",
        "_encoder",
        "_keys",
        "_last",
        "_mask",
        "_segments",
        "_segments_size",
        "_valued",
    )

    def __init__(self, encoder: msgspec.msgpack.Encoder) -> None:
        self._encoder = encoder
        self._keys = [_str_bytes(key) for key in _ORDER_KEYS]
        #: Each place's last value (immutable: kept) and that value's bytes.
        self._last: list[object] = [_NOTHING] * len(_ORDER_KEYS)
        self._valued: list[bytes] = [b""] * len(_ORDER_KEYS)
        #: The places the last reply's values differed at (bit ``i``: place ``i``), and the
        #: bytes between them: ``_ORDER_HEAD`` and the places up to the first's key, ...,
        #: the places after the last. -1: none kept (the last reply failed half way).
        self._mask = -1
        self._segments: list[bytes] = []
        self._segments_size = 0
        #: The last decimal written and its bytes.
        self._decimal: object = _NOTHING
        self._decimal_bytes = b""

    def frame(self, reply: OrderReply) -> bytes | None:
        """``reply``'s whole frame; ``None`` if its order is not an exact ``Order``."""
        order = reply.order
        if type(order) is not _ORDER:
            return None
        values = _ASTUPLE(order)
        last = self._last
        valued = self._valued
        count = len(last)
        if len(values) != count:
            return None
        request_id = _int_bytes(reply.id)
        kept = self._mask
        self._mask = -1  # until this reply's places are all written and their segments kept
        mask = 0
        differing: list[bytes] = []
        size = len(request_id)
        for i in range(count):
            value = values[i]
            before = last[i]
            if value is before:
                continue
            kind = type(value)
            if kind is str and type(before) is str and cast(str, value) == before:
                continue
            data = self._value_bytes(value)
            if kind is str or kind is int or kind is _DECIMAL or kind is bool or value is None:
                last[i] = value
            else:
                last[i] = _NOTHING  # mutable, maybe: written anew every time
            valued[i] = data
            mask |= 1 << i
            differing.append(data)
            size += len(data)
        if mask != kept:
            self._keep_segments(mask)
        segments = self._segments
        size += self._segments_size
        if size > _MAX_HEADER_SIZE - len(_REPLY_HEAD):
            return None
        parts = [_PACK_FRAME_HEAD(size + len(_REPLY_HEAD), _REPLY_HEAD), request_id, segments[0]]
        for j in range(len(differing)):
            parts.append(differing[j])
            parts.append(segments[j + 1])
        self._mask = mask
        return b"".join(parts)

    def _keep_segments(self, mask: int) -> None:
        """Join the bytes between the places of ``mask`` (the keys of those places with
        them) as the reply's segments."""
        keys = self._keys
        valued = self._valued
        segments: list[bytes] = []
        parts = [_ORDER_HEAD]
        for i in range(len(keys)):
            parts.append(keys[i])
            if mask >> i & 1:
                segments.append(b"".join(parts))
                parts = []
            else:
                parts.append(valued[i])
        segments.append(b"".join(parts))
        self._segments = segments
        self._segments_size = sum([len(segment) for segment in segments])

    def _value_bytes(self, value: object) -> bytes:
        kind = type(value)
        if kind is str:
            return _str_bytes(cast(str, value))
        if kind is _DECIMAL:
            if value is self._decimal:
                return self._decimal_bytes
            data = _str_bytes(str(value))
            self._decimal = value
            self._decimal_bytes = data
            return data
        if kind is int:
            return _int_bytes(cast(int, value))
        if value is None:
            return b"\xc0"
        if value is True:
            return b"\xc3"
        if value is False:
            return b"\xc2"
        return self._encoder.encode(value)


class _IdOnly(msgspec.Struct):
    """Just enough of a request to echo its id in an error reply."""

    id: int = 0


class RequestCodec:
    """Server side: decode requests, encode replies."""

    def __init__(self) -> None:
        self._decoder: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)
        self._encoder = msgspec.msgpack.Encoder()
        self._id_decoder = msgspec.msgpack.Decoder(_IdOnly)
        #: Each reply's frame is encoded into this, kept between replies: msgspec grew a
        #: new buffer for every reply (~1.3k instructions of a submit's ~10k), and the
        #: header is written in front of the payload rather than joined to it.
        self._frame = bytearray(_HEADER_SIZE)
        self._orders = _OrderFrames(self._encoder)

    def decode(self, payload: bytes) -> Request:
        """One request; raises ``BadRequest`` naming what was wrong."""
        try:
            return self._decoder.decode(payload)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"not a valid request: {exc}") from None
        except msgspec.DecodeError as exc:
            raise BadRequest(f"frame is not valid msgpack: {exc}") from None
        except RecursionError:
            # msgspec's own depth guard: a hostile frame of nested maps, caught before
            # it can take down the connection or the NATS command subscriber.
            raise BadRequest("frame nests too deeply to be a request") from None

    def request_id(self, payload: bytes) -> int:
        """The id a bad frame carried, if it had one readable; else 0."""
        try:
            return self._id_decoder.decode(payload).id
        except (msgspec.DecodeError, OverflowError, RecursionError):
            return 0

    def encode(self, reply: Reply) -> bytes:
        """One reply as a complete frame."""
        if type(reply) is _ORDER_REPLY:  # a submit's: written from its places
            try:
                framed = self._orders.frame(reply)
            except Exception:  # msgspec's own way below says what is wrong
                framed = None
            if framed is not None:
                return framed
        buf = self._frame
        self._encoder.encode_into(reply, buf, _HEADER_SIZE)  # the buffer ends with it
        size = len(buf) - _HEADER_SIZE
        if size > _MAX_HEADER_SIZE:
            raise FrameTooLarge(size, _MAX_HEADER_SIZE)
        # ``HEADER.pack_into``'s bytes, written one by one (compiled: no method call).
        buf[0] = size >> 24
        buf[1] = size >> 16 & 0xFF
        buf[2] = size >> 8 & 0xFF
        buf[3] = size & 0xFF
        framed = bytes(buf)  # a copy: the buffer is written again by the next reply
        if size > _KEPT_BUFFER_BYTES:
            self._frame = bytearray(_HEADER_SIZE)
        return framed


class ReplyCodec:
    """Client side: encode requests, decode replies."""

    def __init__(self) -> None:
        self._decoder: msgspec.msgpack.Decoder[Reply] = msgspec.msgpack.Decoder(Reply)
        self._encoder = msgspec.msgpack.Encoder()

    def encode(self, request: Request) -> bytes:
        """One request as a complete frame."""
        return frame(self._encoder.encode(request))

    def decode(self, payload: bytes) -> Reply:
        """One reply; raises ``msgspec.DecodeError`` on a reply this client cannot read."""
        return self._decoder.decode(payload)
