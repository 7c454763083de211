"""``Connection``: one Unix socket to the service, shared by any number of async callers.

Each request is framed, sent, and its caller sleeps until the reply with its
id arrives, in whatever order the service answers. A request alone on the
connection (nothing else in flight, no event subscription) costs one task:
its caller writes the frame straight to the socket and reads the reply
itself, as a bare socket client would (on trio straight from the socket: one
``send``, one wait for it to turn readable, one ``recv``). Once others are in
flight, a reader task reads for all of them and a writer task sends what
queued up in one ``send`` per scheduler round; a caller reading for itself
hands the reading over to the reader task when it leaves with others still
waiting.
"""

from __future__ import annotations

import collections
import math
import socket
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ult_actors.client._errors import ConnectionLost
from ult_actors.client._requests import (
    EVENT_FRAMES,
    MAX_REPLY_BYTES,
    connection_error,
    framed,
)
from ult_actors.errors import UltError
from ult_actors.ipc.framing import FrameReader, FrameTooLarge, ReplyCodec
from ult_actors.messages import EventMessage, Reply, Request, SubscriptionDropped

if TYPE_CHECKING:
    from ult_actors.client._trio_socket import TrioSocket

#: What the service pushes outside any request, once subscribed.
Pushed = EventMessage | SubscriptionDropped

#: The most one read takes off the socket.
READ_SIZE = 1 << 16

#: The context a request waits in on trio (the connection keeps its deadline).
_NOTHING = nullcontext()


def _on_trio(raw: object) -> TrioSocket | None:
    """``raw`` read the trio way, if trio runs this task (it is loaded then already)."""
    if type(raw) is not socket.socket or "trio" not in sys.modules:
        return None
    from ult_actors.client import _trio_socket

    return _trio_socket.TrioSocket(raw) if _trio_socket.running() else None


class _Waiter:
    """One request's reply, or the error that ended the connection first, or neither
    once its deadline passed (on trio, where the connection keeps the deadlines).

    ``done`` is made only for a caller that sleeps while another task reads;
    a caller reading the socket itself needs no event.
    """

    __slots__ = ("deadline", "done", "error", "reply", "settled")

    def __init__(self) -> None:
        self.done: anyio.Event | None = None
        self.reply: Reply | None = None
        self.error: UltError | None = None
        self.settled = False
        self.deadline = math.inf

    def settle(self, reply: Reply | None, error: UltError | None) -> bool:
        """Settle with ``reply`` or ``error`` (neither: timed out); False if its caller
        reads the socket itself (nothing else wakes it)."""
        self.reply = reply
        self.error = error
        self.settled = True
        if self.done is None:
            return False
        self.done.set()
        return True

    async def wait(self) -> None:
        if not self.settled:
            self.done = anyio.Event()
            await self.done.wait()


class Connection:
    """An open socket to the service; ``request`` from any number of tasks at once.

    Run ``run`` in a task group for the connection's life (its reader and
    writer tasks); ``close`` fails whatever still waits with ``ConnectionLost``.
    """

    def __init__(
        self, stream: anyio.abc.SocketStream, socket_path: Path, *, event_buffer: int
    ) -> None:
        self.socket_path = socket_path
        self._stream = stream
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        # trio hands out the socket itself, with nothing buffered above it, so a
        # non-blocking send keeps the frames in order and a read may take the bytes
        # straight off it (trio's own wait and cancel scope, without anyio's layers
        # around each call); asyncio's transport buffers writes and reads itself (its
        # socket is a wrapper), so there every byte goes through the anyio stream.
        self._trio = _on_trio(raw)
        self._raw: socket.socket | None = raw if self._trio is not None else None
        self._codec = ReplyCodec()
        self._frames = FrameReader(MAX_REPLY_BYTES)
        #: Requests sent and not answered yet, by id (an answer takes its waiter out).
        self._pending: dict[int, _Waiter] = {}
        #: Frames the writer task sends next; a caller writes straight to the socket
        #: only when this is empty and the writer is not sending.
        self._outgoing: list[bytes] = []
        self._writing = False
        self._writer_wanted = anyio.Event()
        #: A task (the reader, or a lone request's caller) is reading the socket.
        self._reading = False
        self._reader_wanted = anyio.Event()
        self._events_wanted = False
        self._send_failed = False
        #: Events read by a caller, for the reader task to pass on (it alone may block
        #: on a full event buffer, which holds the socket's reading back).
        self._events_in: collections.deque[Pushed] = collections.deque()
        self._event_send: MemoryObjectSendStream[Pushed]
        self.events: MemoryObjectReceiveStream[Pushed]
        self._event_send, self.events = anyio.create_memory_object_stream[Pushed](event_buffer)
        self._ended = anyio.Event()
        #: Why the connection can no longer be used, once it cannot; an error the
        #: service sent about the whole connection (busy, unauthorized) comes first.
        self.closed_error: UltError | None = None
        #: Replies whose id matched no waiting request (see ``AsyncClient``).
        self.unmatched_replies = 0

    async def run(self) -> None:
        """The reader and writer tasks, until the connection ends or is closed."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write_loop)
            if self._trio is not None:
                tg.start_soon(self._trio.keep_time, self._expire)
            await self._read_loop()
            tg.cancel_scope.cancel()

    def close(self) -> None:
        """Fail every waiting request and end the event stream."""
        self._lost(ConnectionLost(self.socket_path, "the client closed the connection"))
        self._event_send.close()

    def want_events(self) -> None:
        """From now on the reader task reads whether or not requests wait (events come)."""
        self._events_wanted = True
        self._reader_wanted.set()

    async def request(self, request: Request, timeout: float | None) -> Reply | None:
        """Send ``request`` and return its reply; ``None`` if ``timeout`` passed first.

        Raises the connection's error if it ended (or had ended) before the reply.
        """
        if self.closed_error is not None:
            raise self.closed_error
        data = framed(self._codec, request)
        waiter = _Waiter()
        alone = not self._pending and not self._reading and not self._events_wanted
        self._pending[request.id] = waiter
        self._send(data, direct=alone)
        try:
            with self._deadline(waiter, timeout):
                if alone:
                    await self._read_for(waiter)
                else:
                    await waiter.wait()
        finally:
            self._pending.pop(request.id, None)  # still there if the wait was cut short
        if waiter.error is not None:
            raise waiter.error
        return waiter.reply  # None: the deadline ended the wait

    def _deadline(self, waiter: _Waiter, timeout: float | None) -> AbstractContextManager[object]:
        """What ends the wait for ``waiter`` ``timeout`` seconds from now (never if ``None``).

        On trio the connection's clock (``_expire``), around nothing; elsewhere a
        cancel scope of the request's own.
        """
        if self._trio is not None:
            if timeout is not None:
                waiter.deadline = self._trio.deadline(timeout)
                self._trio.watch(waiter.deadline)
            return _NOTHING
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        return anyio.CancelScope(deadline=deadline)

    def _expire(self, now: float) -> float:
        """Settle, empty, every request whose deadline is ``now`` or past; the next deadline."""
        assert self._trio is not None
        next_deadline = math.inf
        for request_id, waiter in list(self._pending.items()):
            if waiter.deadline <= now:
                del self._pending[request_id]  # a reply coming later is unmatched
                if not waiter.settle(None, None):
                    self._trio.wake()  # its caller waits on the socket itself
            elif waiter.deadline < next_deadline:
                next_deadline = waiter.deadline
        return next_deadline

    # -- writing ----------------------------------------------------------------

    def _send(self, data: bytes, *, direct: bool) -> None:
        if direct and self._raw is not None and not self._outgoing and not self._writing:
            try:
                sent = self._raw.send(data)
            except OSError:  # full (BlockingIOError) or broken: the writer task finds out
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self._outgoing.append(data)
        self._writer_wanted.set()

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._writer_wanted.wait()
                # Let other tasks queue their requests too, then send them together.
                await anyio.lowlevel.checkpoint()
                self._writer_wanted = anyio.Event()
                chunks, self._outgoing = self._outgoing, []
                if chunks:
                    self._writing = True
                    if self._trio is not None:
                        await self._trio.send_all(b"".join(chunks))
                    else:
                        await self._stream.send(b"".join(chunks))
                    self._writing = False
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            # What the service sent before it closed may say why (``busy``): let the
            # reader reach the end first, so that error is the one raised.
            self._send_failed = True
            self._reader_wanted.set()
            with anyio.move_on_after(1.0):
                await self._ended.wait()
            self._lost(ConnectionLost(self.socket_path, f"sending failed: {exc}"))

    # -- reading ----------------------------------------------------------------

    async def _read_for(self, waiter: _Waiter) -> None:
        """Read in the caller's own task until ``waiter`` is answered (a lone request)."""
        self._reading = True
        try:
            while not waiter.settled:
                # The reply cannot be there yet (or the rest of it, after a part):
                # wait for it rather than try a read that would find nothing.
                await self._read_once(wait_first=True)
        finally:
            self._reading = False
            # An answered waiter has left the table; one given up on is still in it.
            others = len(self._pending) - (not waiter.settled)
            if others or self._events_in:
                self._reader_wanted.set()  # others still wait: the reader task reads on

    async def _read_loop(self) -> None:
        try:
            await self._read_until_the_end()
            while self._events_in:
                await self._event_send.send(self._events_in.popleft())
            self._event_send.close()
        except anyio.ClosedResourceError:
            pass  # the client closed the event stream itself (``close``)

    async def _read_until_the_end(self) -> None:
        while not self._ended.is_set():
            if self._events_in:
                await self._event_send.send(self._events_in[0])
                self._events_in.popleft()
            elif self._reading or not (self._pending or self._events_wanted or self._send_failed):
                self._reader_wanted = anyio.Event()
                await self._reader_wanted.wait()
            else:
                self._reading = True
                try:
                    await self._read_once()
                finally:
                    self._reading = False

    async def _read_once(self, *, wait_first: bool = False) -> None:
        """Read what the socket has and settle what it answers; the connection's end
        fails every waiter."""
        try:
            if self._trio is None:
                data: bytes | None = await self._stream.receive(READ_SIZE)
            else:
                data = await self._trio.receive(READ_SIZE, wait_first=wait_first)
                if data is None:
                    return  # woken at a deadline: the reader looks again at what it waits for
            if not data:
                raise anyio.EndOfStream
            frames = self._frames
            frames.add(data)
            while (payload := frames.take()) is not None:
                self._take(self._codec.decode(payload))
        except anyio.EndOfStream:
            self._lost(ConnectionLost(self.socket_path, "the service closed the connection"))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self._lost(ConnectionLost(self.socket_path, f"connection broken: {exc}"))
        except (msgspec.DecodeError, FrameTooLarge) as exc:
            reason = f"unreadable reply from the service: {exc}"
            self._lost(ConnectionLost(self.socket_path, reason))

    def _take(self, reply: Reply) -> None:
        if isinstance(reply, EVENT_FRAMES):
            self._events_in.append(reply)
            self._reader_wanted.set()
            return
        waiter = self._pending.pop(reply.id, None)
        if waiter is None:
            error = connection_error(reply)
            if error is not None:
                self.closed_error = error
            else:
                self.unmatched_replies += 1
            return
        waiter.settle(reply, None)

    def _lost(self, error: UltError) -> None:
        error = self.closed_error or error
        self.closed_error = error
        for waiter in self._pending.values():
            waiter.settle(None, error)
        self._pending.clear()
        self._ended.set()
        self._reader_wanted.set()
