"""Frames waiting to go out on one connection, written with as few syscalls as possible.

Per-frame ``send_all`` calls dominate the cost of a pipelined client (see
the performance notes), so producers only append encoded frames here and a
single writer task sends everything that has accumulated in one
``send_all``: the replies finished in the same scheduler round, and all that
piled up while the previous send was blocked, travel together.

Bytes count as queued until the kernel has taken them (a ``send_all``
blocked on a client that does not read still holds its buffer), both in the
outbox's own ``queued_bytes`` and in the ``OutboxBudget`` all connections
share, so the server can stop reading from clients that do not read.

A reply nothing else is waiting to join (``put(..., now=True)``: the
connection's only request in flight) is written at once by the task that
finished it, when nothing is queued or being sent: a lone request's answer
then leaves without waking the writer task and without the round it waits
for company, so it goes out before the bookkeeping that finished beside it
(the journal's news, the positions' update) rather than after.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio


class OutboxBudget:
    """The bytes queued in every connection's outbox together, against one cap."""

    def __init__(self, cap: int) -> None:
        #: Above this many bytes in all outboxes, no connection's requests are read.
        self.cap = cap
        self.queued = 0
        #: The most ``queued`` has been.
        self.peak = 0
        #: True while the outboxes together hold more than ``cap`` bytes (kept as
        #: ``queued`` changes: every connection reads it for every request).
        self.over = False
        #: Connections not reading requests now because of a limit (for health and tests).
        self.paused_readers = 0
        self._room = trio.Event()
        self._room.set()
        self._over = trio.Event()

    def add(self, size: int) -> None:
        """Count ``size`` more bytes queued somewhere."""
        queued = self.queued = self.queued + size
        if queued > self.peak:
            self.peak = queued
        if queued > self.cap and not self.over:
            self.over = True
            self._room = trio.Event()
            self._over.set()

    def remove(self, size: int) -> None:
        """Count ``size`` bytes as gone (sent or discarded)."""
        self.queued -= size
        if self.over and self.queued <= self.cap:
            self.over = False
            self._room.set()
            self._over = trio.Event()

    async def wait_until_over(self) -> None:
        """Wait until the outboxes together hold more than the cap."""
        await self._over.wait()

    async def wait_for_room(self) -> None:
        """Wait until the outboxes together are at or below the cap."""
        await self._room.wait()


class Outbox:
    """A byte queue with one writer task; ``put`` never blocks."""

    def __init__(self, high_water: int = 1 << 20, budget: OutboxBudget | None = None) -> None:
        #: Above this many queued bytes, ``wait_for_room`` blocks (the reader and the
        #: event forwarder use it).
        self.high_water = high_water
        self.budget = budget if budget is not None else OutboxBudget(cap=1 << 62)
        self._chunks: list[bytes] = []
        #: Bytes put and not yet taken by the kernel (those of a blocked send included).
        self.queued_bytes = 0
        #: Writes what it can of some bytes without blocking (the socket's, once ``run``
        #: has its stream); None: every frame goes through the writer task.
        self._write_now: Callable[[bytes], int] | None = None
        self._sending = False
        self._wake = trio.Event()
        self._room = trio.Event()
        self._room.set()
        self._closing = False
        #: When the client last took bytes, or the queue last became non-empty.
        self._progress_at = trio.current_time()
        #: Frames and ``send_all`` calls so far (the ratio shows the coalescing).
        self.frames_sent = 0
        self.sends = 0

    def put(self, data: bytes, *, now: bool = False) -> None:
        """Queue one encoded frame for sending; with ``now``, write it at once if the
        queue is empty and no send is under way (what the socket does not take is
        queued for the writer task)."""
        if self._closing:
            return
        if not self.queued_bytes:
            if now and not self._sending and self._write_now is not None:
                data = self._write_at_once(data)
                if not data:
                    return
            self._progress_at = trio.current_time()
        if not self._chunks:
            self._wake.set()  # queued chunks mean the writer is woken already
        self._chunks.append(data)
        # What ``_grow`` does for a positive size, without the call: once per reply.
        size = len(data)
        self.queued_bytes += size
        self.budget.add(size)
        if self.queued_bytes > self.high_water and self._room.is_set():
            self._room = trio.Event()

    def stalled_for(self) -> float:
        """Seconds the client has taken none of the bytes queued for it (0 if none are)."""
        return trio.current_time() - self._progress_at if self.queued_bytes else 0.0

    async def wait_for_room(self) -> None:
        """Wait until the queue is at or below its high-water mark."""
        await self._room.wait()

    def close(self) -> None:
        """Send what is queued, then let ``run`` return; later ``put`` calls are dropped."""
        self._closing = True
        self._wake.set()

    def discard(self) -> None:
        """Drop everything still queued (the connection is gone) and give back its budget."""
        self._closing = True
        self._chunks = []
        self._grow(-self.queued_bytes)

    def _write_at_once(self, data: bytes) -> bytes:
        """Write ``data`` on the caller's thread without blocking; what is left of it."""
        assert self._write_now is not None
        try:
            written = self._write_now(data)
        except (BlockingIOError, InterruptedError):
            return data
        except OSError:
            # A broken connection: the writer task's send meets the error and ends it.
            return data
        self.frames_sent += 1
        self.sends += 1
        return data[written:]

    async def run(self, stream: trio.abc.SendStream) -> None:
        """The writer: send queued frames until closed and drained."""
        if isinstance(stream, trio.SocketStream):
            fd = stream.socket.fileno()
            self._write_now = lambda data: os.write(fd, data)
        try:
            await self._run(stream)
        finally:
            self._write_now = None  # the stream is closed after this returns

    async def _run(self, stream: trio.abc.SendStream) -> None:
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
            self._wake = trio.Event()
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._sending = True
            try:
                await stream.send_all(data)
            finally:
                self._sending = False
            self._progress_at = trio.current_time()
            if self.queued_bytes:  # not discarded meanwhile
                self._grow(-len(data))
            self.frames_sent += len(chunks)
            self.sends += 1
            if self._chunks or self._closing:
                self._wake.set()

    def _grow(self, size: int) -> None:
        self.queued_bytes += size
        if size >= 0:
            self.budget.add(size)
        else:
            self.budget.remove(-size)
        if self.queued_bytes > self.high_water:
            if self._room.is_set():
                self._room = trio.Event()
        else:
            self._room.set()
