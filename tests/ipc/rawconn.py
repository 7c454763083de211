"""A raw framed connection for tests that must see every frame the server sends."""

from __future__ import annotations

from pathlib import Path

import trio

from ult_actors.ipc.framing import FrameReader, ReplyCodec, frame
from ult_actors.messages import Reply, Request


class RawConnection:
    """Send requests or arbitrary bytes; receive replies one frame at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.codec = ReplyCodec()
        self.frames = FrameReader(64 << 20)
        self.ready: list[bytes] = []

    @classmethod
    async def open(cls, path: Path) -> RawConnection:
        return cls(await trio.open_unix_socket(str(path)))

    async def send(self, *requests: Request) -> None:
        await self.stream.send_all(b"".join(self.codec.encode(r) for r in requests))

    async def send_raw(self, data: bytes, *, framed: bool = False) -> None:
        await self.stream.send_all(frame(data) if framed else data)

    async def receive(self) -> Reply:
        """The next reply; AssertionError if the server closed the connection first."""
        while not self.ready:
            data = await self.stream.receive_some(1 << 16)
            assert data, "the server closed the connection"
            self.ready.extend(self.frames.feed(data))
        return self.codec.decode(self.ready.pop(0))

    async def at_eof(self) -> bool:
        """True once the server has closed its side (after any pending frames)."""
        while True:
            data = await self.stream.receive_some(1 << 16)
            if not data:
                return True
            self.ready.extend(self.frames.feed(data))

    async def aclose(self) -> None:
        await self.stream.aclose()
