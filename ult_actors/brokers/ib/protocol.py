"""TWS API framing and handshake: the bytes under every IB message.

After the 4-byte ``API\\0`` preamble, everything on the socket is a frame: a
big-endian ``uint32`` payload length, then the payload. Up to server version
200 a payload is a list of ASCII fields, each terminated by NUL, the first
being the message id. We advertise ``v157..178`` (the fields-only protocol;
from 201 on servers switch families of messages to protobuf, which we never
ask for), so whatever the server picks, it is within that range.

Handshake, client side: send the preamble and one frame holding the text
``v<min>..<max>`` (no NUL); the server answers with a frame of exactly two
fields, its chosen version and its connection time; the client then sends
START_API with its client id. This module holds the pieces both the
connector and the simulator use; it does no I/O beyond ``FrameStream``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import trio

#: Sent before the first frame by every client.
API_PREFIX = b"API\x00"
#: The versions this package speaks, both as a client and as the simulator.
MIN_SERVER_VERSION = 157
MAX_SERVER_VERSION = 178
#: The largest payload TWS accepts or sends (a 24-bit length).
MAX_PAYLOAD = 0xFFFFFF

_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent bytes that are not the TWS API protocol."""


def encode_fields(fields: Iterable[str]) -> bytes:
    """One frame: length prefix, then each field NUL-terminated."""
    payload = b"".join(f.encode() + b"\x00" for f in fields)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds the TWS limit")
    return _LENGTH.pack(len(payload)) + payload


def encode_raw(payload: bytes) -> bytes:
    """One frame around an already-built payload (the handshake's version text)."""
    return _LENGTH.pack(len(payload)) + payload


def split_fields(payload: bytes) -> list[str]:
    """A payload's fields; a text payload always ends with a NUL."""
    if not payload.endswith(b"\x00"):
        raise ProtocolError("message does not end with a NUL-terminated field")
    # TWS text is ASCII in practice; latin-1 never fails on stray bytes.
    return payload[:-1].decode("latin-1").split("\x00")


def version_range_text(min_version: int, max_version: int, options: str = "") -> bytes:
    """The handshake payload a client sends after ``API\\0``."""
    text = f"v{min_version}..{max_version}"
    return (text + " " + options if options else text).encode()


def parse_version_range(payload: bytes) -> tuple[int, int, str]:
    """``(min, max, options)`` from a client's handshake payload."""
    text = payload.decode("latin-1")
    head, _, options = text.partition(" ")
    if not head.startswith("v"):
        raise ProtocolError(f"handshake does not start with 'v': {text[:32]!r}")
    low, sep, high = head[1:].partition("..")
    try:
        lo = int(low)
        hi = int(high) if sep else lo
    except ValueError:
        raise ProtocolError(f"handshake version range is not numeric: {head!r}") from None
    if lo > hi:
        raise ProtocolError(f"handshake version range is empty: {head!r}")
    return lo, hi, options


def choose_version(client_min: int, client_max: int) -> int | None:
    """The version a server in our range picks for a client range, or None if none fits."""
    version = min(client_max, MAX_SERVER_VERSION)
    return version if version >= max(client_min, MIN_SERVER_VERSION) else None


class FrameBuffer:
    """Cuts a byte stream into frame payloads; bytes may arrive in any split."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_payload(self) -> bytes | None:
        """The next complete payload, or None until more bytes arrive."""
        if len(self._buf) < 4:
            return None
        (length,) = _LENGTH.unpack_from(self._buf)
        if length > MAX_PAYLOAD:
            raise ProtocolError(f"frame length {length} exceeds the TWS limit")
        if len(self._buf) < 4 + length:
            return None
        payload = bytes(self._buf[4 : 4 + length])
        del self._buf[: 4 + length]
        return payload

    def take(self, n: int) -> bytes | None:
        """Exactly ``n`` raw bytes (the preamble), or None until they arrived."""
        if len(self._buf) < n:
            return None
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


class ConnectionClosed(Exception):
    """The peer closed the socket (or it broke)."""


class FrameStream:
    """Frames over a trio stream: one reader task, writers serialised by a lock."""

    def __init__(self, stream: trio.abc.Stream, *, max_read: int = 65536) -> None:
        self.stream = stream
        self._buffer = FrameBuffer()
        self._send_lock = trio.Lock()
        self._max_read = max_read

    async def _fill(self) -> None:
        try:
            data = await self.stream.receive_some(self._max_read)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionClosed(str(exc) or type(exc).__name__) from exc
        if not data:
            raise ConnectionClosed("peer closed the connection")
        self._buffer.feed(bytes(data))

    async def receive_exactly(self, n: int) -> bytes:
        """``n`` raw bytes (used for the ``API\\0`` preamble)."""
        while (data := self._buffer.take(n)) is None:
            await self._fill()
        return data

    async def receive_payload(self) -> bytes:
        """The next frame's payload."""
        while (payload := self._buffer.next_payload()) is None:
            await self._fill()
        return payload

    async def receive_fields(self) -> list[str]:
        """The next frame, split into fields."""
        return split_fields(await self.receive_payload())

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Send whole frames in one write (several frames coalesce into one syscall)."""
        async with self._send_lock:
            try:
                await self.stream.send_all(b"".join(frames))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionClosed(str(exc) or type(exc).__name__) from exc

    async def send_fields(self, *messages: Sequence[str]) -> None:
        """Encode and send one or more messages."""
        await self.send_frames([encode_fields(m) for m in messages])

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()
