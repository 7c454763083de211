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
from typing import Final

import msgspec

from ult_actors.errors import BadRequest
from ult_actors.messages import Reply, Request

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
