"""Frames waiting to go out on one connection, written with as few syscalls as possible.

Per-frame ``send_all`` calls dominate the cost of a pipelined client (see
the performance notes), so producers only append encoded frames here and a
single writer task sends everything that has accumulated in one
``send_all``: the replies finished in the same scheduler round, and all that
piled up while the previous send was blocked, travel together.
"""

from __future__ import annotations

import trio


class Outbox:
    """A byte queue with one writer task; ``put`` never blocks."""

    def __init__(self, high_water: int = 1 << 20) -> None:
        #: Above this many queued bytes, ``wait_for_room`` blocks (event forwarders use it).
        self.high_water = high_water
        self._chunks: list[bytes] = []
        self._size = 0
        self._wake = trio.Event()
        self._room = trio.Event()
        self._room.set()
        self._closing = False
        #: Frames and ``send_all`` calls so far (the ratio shows the coalescing).
        self.frames_sent = 0
        self.sends = 0

    @property
    def queued_bytes(self) -> int:
        return self._size

    def put(self, data: bytes) -> None:
        """Queue one encoded frame for sending."""
        if self._closing:
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > self.high_water and self._room.is_set():
            self._room = trio.Event()
        self._wake.set()

    async def wait_for_room(self) -> None:
        """Wait until the queue is below its high-water mark."""
        await self._room.wait()

    def close(self) -> None:
        """Send what is queued, then let ``run`` return; later ``put`` calls are dropped."""
        self._closing = True
        self._wake.set()

    async def run(self, stream: trio.abc.SendStream) -> None:
        """The writer: send queued frames until closed and drained."""
        while True:
            await self._wake.wait()
            # One scheduler round lets replies finishing alongside this one join the send.
            await trio.lowlevel.checkpoint()
            if not self._chunks:
                if self._closing:
                    return
                self._wake = trio.Event()
                continue
            chunks, self._chunks = self._chunks, []
            self._size = 0
            self._room.set()
            self._wake = trio.Event()
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            await stream.send_all(data)
            self.frames_sent += len(chunks)
            self.sends += 1
            if self._chunks or self._closing:
                self._wake.set()
