"""One client connection: read frames, answer requests (none waiting for another), push events.

Requests are pipelined: every complete frame of a read is decoded, and
replies go out in whatever order they finish, each carrying the request's id.
The reading itself is a turn passed between the connection's tasks (kept
parked between requests, see ``taskpool.py``): the task that read a batch
answers the batch's requests itself, one after another, so a lone request is
answered in the step that read it. A batch of several hands the reading on
at once, so the next task already reads; a lone request keeps it unless its
answer waits, when it is handed on as the answer begins to wait (a lone
request answered at once, most are, then costs the connection one task step,
not a second one for the next read). No request waits for another's answer:
before each request it answers with more left, the task wakes another to take
over the rest, which it does if this answer waits (a cancel sent while a
submit waits on a slow broker is answered at once); answers that do not wait
(most do not) cost no task wake-up each, and a task whose answer came takes
what is left.
Back-pressure: the connection stops taking frames
(and the client's writes block in the kernel) while ``max_in_flight``
requests are being answered, while its outbox holds more than its high-water
mark of unsent bytes, while all outboxes together are over the server's
budget, and while the service's intake gate is closed (its journal's fold too
far behind, ``runtime/intake.py``). A client that does not read its replies
therefore costs at most the high-water mark plus the replies of the requests
it had in flight.

Past ``max_queued_bytes`` unsent (a client that pipelines requests with big
answers, like order lists, and does not read them), or above the high-water
mark having read nothing for ``stalled_s`` while the shared budget is
exhausted (silent subscribers), the connection is closed with a logged
reason: holding its replies would hold their memory, and a client that does
not read cannot be told anything anyway.

Bad input never costs the connection unless it makes the stream unreadable:
a frame that is not a request is answered with ``bad_request`` and the next
frame is read as usual, while a frame header over the size limit is answered
and then the connection is closed (the rest of the stream cannot be trusted
to be aligned on frames).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Awaitable
from typing import Any, Final, cast

import trio
from msgspec import Struct
from trio.lowlevel import checkpoint_if_cancelled

from ult_actors.errors import BadRequest
from ult_actors.ipc.dispatch import Dispatcher
from ult_actors.ipc.framing import FrameReader, FrameTooLarge, RequestCodec
from ult_actors.ipc.gateway import Gateway
from ult_actors.ipc.outbox import Outbox, OutboxBudget
from ult_actors.ipc.peercred import PeerCredentials
from ult_actors.ipc.suspension import run_noting_suspension
from ult_actors.ipc.taskpool import TaskPool
from ult_actors.messages import (
    ErrorReply,
    EventMessage,
    OkReply,
    OrderReply,
    Reply,
    Request,
    Subscribe,
    SubscriptionDropped,
)
from ult_actors.runtime.intake import IntakeGate
from ult_actors.runtime.pubsub import AfterReply, Subscription

_READ_SIZE = 1 << 16
#: Tasks a connection keeps parked for its next requests (see ``taskpool.py``): a
#: pipelining client's usual window, ~256 KB at most.
_IDLE_TASKS = 128
#: How long replies still owed are awaited after the client closed its side.
_EOF_GRACE_S = 30.0


class _ReadTurn:
    """The job of reading the connection's next requests (one task at a time has it)."""


class _TakeTurn:
    """The job of answering the requests read and not yet taken by another task."""


_READ = _ReadTurn()
_TAKE = _TakeTurn()

# What every request's way reads, as ``Final`` names: compiled, a C static each, not a
# look-up in this module's dict (a class from an uncompiled module is one otherwise).
_ORDER_REPLY: Final = OrderReply
_ERROR_REPLY: Final = ErrorReply
_SUBSCRIBE: Final = Subscribe


class Connection:
    """Serves one accepted stream until the client leaves or the server stops."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        gateway: Gateway,
        peer: PeerCredentials,
        *,
        log: Any,
        max_frame_bytes: int,
        subscriber_queue: int,
        max_in_flight: int = 1024,
        outbox_high_water: int = 1 << 20,
        max_queued_bytes: int = 16 << 20,
        budget: OutboxBudget | None = None,
        stalled_s: float = 5.0,
        intake: IntakeGate | None = None,
    ) -> None:
        self.stream = stream
        #: While closed, this connection reads no requests (``runtime/intake.py``).
        self._intake = intake if intake is not None else IntakeGate()
        self.gateway = gateway
        self.peer = peer
        self.log = log.bind(peer_uid=peer.uid, peer_pid=peer.pid)
        self.max_frame_bytes = max_frame_bytes
        self.subscriber_queue = subscriber_queue
        self.max_in_flight = max_in_flight
        self.max_queued_bytes = max_queued_bytes
        self.stalled_s = stalled_s
        self.codec = RequestCodec()
        self.dispatcher = Dispatcher(gateway, self.log)
        self.outbox = Outbox(outbox_high_water, budget)
        #: Why the server closed this connection for not reading, if it did.
        self.dropped: str | None = None
        self._in_flight = 0
        self._capacity = trio.Event()
        self._capacity.set()
        #: ``_capacity`` is clear (the limit was reached): trio's ``Event.set`` is
        #: interpreted Python (~500 instructions), so only a clear one is set.
        self._capacity_clear = False
        self._subscription: Subscription[Any] | None = None
        self._done = trio.CancelScope()
        # The reading turn, passed from task to task (see ``_read``).
        self._frames = FrameReader(max_frame_bytes)
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._drained = True
        self._paused = False
        self._oversize = False
        self._read_over = trio.Event()
        # Requests read (counted in flight) that no task has begun to answer, and
        # whether a task is woken to take them (see ``_take``).
        self._untaken: deque[Request] = deque()
        self._taker_due = False
        self._handlers: trio.Nursery
        self._tasks: TaskPool[_ReadTurn | _TakeTurn]
        #: The run's ``AfterReply``, told of each reply written: kept, as reading its
        #: ``RunVar`` on every reply cost ~1.7k instructions (interpreted trio code).
        self._after_reply: AfterReply

    async def run(self) -> None:
        """Serve until EOF, a broken stream, an oversize frame or cancellation."""
        self._after_reply = AfterReply.of_this_run()
        try:
            with self._done:
                async with trio.open_nursery() as writer:
                    writer.start_soon(self._write, writer.cancel_scope)
                    writer.start_soon(self._watch_budget)
                    async with trio.open_nursery() as handlers:
                        self._handlers = handlers
                        self._tasks = TaskPool(handlers, self._serve, max_idle=_IDLE_TASKS)
                        self._tasks.hand(_READ)
                        await self._read_over.wait()
                        self._tasks.close()
                        if self._oversize:
                            handlers.cancel_scope.cancel()
                        else:
                            # The client closed its side. It may still read replies (a
                            # half-close), but not forever: a ``wait=True`` submit of a
                            # resting order must not pin a vanished client's tasks. The
                            # orders themselves are unaffected; only the waiting ends.
                            handlers.cancel_scope.deadline = trio.current_time() + _EOF_GRACE_S
                            if self._subscription is not None:
                                self._subscription.close()  # nobody will read events
                    self.outbox.close()
        finally:
            self.outbox.discard()  # nobody will send it now; give its bytes back
            if self._subscription is not None:
                self._subscription.close()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _write(self, writer: trio.CancelScope) -> None:
        try:
            await self.outbox.run(self.stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._done.cancel()  # the client is gone; stop answering it
        writer.cancel()  # all is sent: the budget watcher is done too

    async def _watch_budget(self) -> None:
        """Close this connection if it holds over its high-water mark while all
        connections together are over budget (silent subscribers add nothing more,
        so no ``put`` would notice)."""
        budget = self.outbox.budget
        while True:
            await budget.wait_until_over()
            while budget.over:
                if self._close_if_stalled(
                    f"while all connections together are over their limit of {budget.cap}"
                ):
                    return
                # A big reply being read is not a stall: look again shortly.
                with trio.move_on_after(self.stalled_s / 4):
                    await budget.wait_for_room()

    async def _serve(self, job: _ReadTurn | _TakeTurn) -> None:
        """One job of the connection's tasks: take the reading turn, or take over the
        requests read and not yet taken; then answer those."""
        if isinstance(job, _ReadTurn):
            if not await self._read_answering_lone_requests():
                return
        else:
            self._taker_due = False
        await self._take()

    async def _read_answering_lone_requests(self) -> bool:
        """Read; a lone request read is answered here, and the reading goes on unless
        its answer waited (then the turn went on to another task as the answer began to
        wait); requests read together hand the turn on at once. True if requests may be
        left to take, False once the reading is over."""
        untaken = self._untaken
        while await self._read():  # a checkpoint: this task was not cancelled meanwhile
            if len(untaken) > 1:
                self._tasks.hand(_READ)
                return True
            request = untaken.popleft()
            answer = self.dispatcher.begin(request, self.peer)
            # The reply itself (most: answered without a wait), a submit's by a pointer
            # compare (``isinstance`` against the Struct base costs ~300 instructions).
            if type(answer) is _ORDER_REPLY or isinstance(answer, Struct):
                self._reply(answer)
            elif not await run_noting_suspension(self._reply_when(answer), self._hand_reading):
                return True  # take what was read meanwhile
        return False

    def _hand_reading(self) -> None:
        self._tasks.hand(_READ)

    async def _take(self) -> None:
        """Answer the requests read and not yet taken, one after another, while another
        task is due to take over the rest: a request whose answer waits (a slow broker)
        holds up no other; one answered in this step (most are) costs no task wake-up.

        The requests answered without a wait cost no checkpoint each: this task's one,
        first, tells whether it was cancelled, and nothing can cancel it until one of
        them waits (but its own ``_drop``, which is checked).
        """
        await checkpoint_if_cancelled()
        untaken = self._untaken
        dispatcher = self.dispatcher
        while untaken:
            request = untaken.popleft()
            if untaken and not self._taker_due:
                self._taker_due = True
                self._tasks.hand(_TAKE)
            answer = dispatcher.begin(request, self.peer)
            if type(answer) is _ORDER_REPLY or isinstance(answer, Struct):  # as above
                self._reply(answer)
                if self.dropped is not None:
                    await checkpoint_if_cancelled()  # dropped: answer nothing more
            else:
                await self._reply_when(answer)

    async def _read(self) -> bool:
        """Read until a read brings requests to answer; False once the reading is over:
        EOF, a broken stream, or an oversize frame."""
        while True:
            if self._full():  # not a coroutine's run per read when there is room
                await self._wait_for_room()
            # Paused at a limit: finish the frames already buffered first.
            data: bytes | bytearray = b""
            if self._paused:
                await checkpoint_if_cancelled()  # as a receive is: the answers need one
            else:
                try:
                    data = await self._receive()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    self._done.cancel()
                    break
                if not data:
                    break
            try:
                self._dispatch_until_full(data)
            except FrameTooLarge as exc:
                self.log.warning("oversize frame; closing connection", size=exc.size)
                self._send(
                    ErrorReply(id=0, error=BadRequest(f"{exc}; closing the connection").to_info())
                )
                self._oversize = True
                break
            if self._untaken:
                return True
        self._read_over.set()
        return False

    async def _receive(self) -> bytes | bytearray:
        """The next bytes from the client (b"" at EOF).

        A read that did not fill its buffer emptied the socket, so on a socket the
        next one waits for data before reading: a lone request costs one read, not
        a read that finds nothing and then another (what ``receive_some`` does).
        """
        if self._fd is None or not self._drained:
            data = await self.stream.receive_some(_READ_SIZE)
        else:
            while True:
                await trio.lowlevel.wait_readable(self._fd)
                try:
                    data = os.read(self._fd, _READ_SIZE)
                    break
                except BlockingIOError:  # woken for nothing: wait again
                    continue
        self._drained = len(data) < _READ_SIZE
        return data

    async def _wait_for_room(self) -> None:
        """Wait until this connection may take another request (see the module doc)."""
        if not self._full():
            return
        budget = self.outbox.budget
        budget.paused_readers += 1
        try:
            while self._full():
                await self._capacity.wait()
                await self.outbox.wait_for_room()
                await budget.wait_for_room()
                await self._intake.wait_open()
        finally:
            budget.paused_readers -= 1

    def _full(self) -> bool:
        outbox = self.outbox
        return (
            self._in_flight >= self.max_in_flight  # ``_capacity`` is clear
            or outbox.queued_bytes > outbox.high_water
            or outbox.budget.over
            or self._intake.closed
        )

    def _dispatch_until_full(self, data: bytes | bytearray) -> None:
        """Decode the complete frames of ``data`` into the requests not yet taken,
        stopping at a limit with frames left buffered (one read may hold thousands of
        small requests)."""
        frames = self._frames
        frames.add(data)
        untaken = self._untaken
        self._paused = False
        while (payload := frames.take()) is not None:  # the frames not taken stay buffered
            request = self._dispatch(payload)
            if request is not None:
                untaken.append(request)
            if self._full():
                self._paused = True
                return

    def _dispatch(self, payload: bytes) -> Request | None:
        """The request of one frame, counted in flight; None if it is answered already
        (a bad frame) or is a subscription."""
        request = self.dispatcher.decode(payload)
        # ``type() is``, not ``isinstance``: a Struct class's ``isinstance`` that fails
        # costs ~600 instructions, and most frames are neither (decoded, never subclassed).
        if type(request) is _ERROR_REPLY:
            self._send(request)
            return None
        if type(request) is _SUBSCRIBE:
            self._subscribe(request)
            return None
        self._in_flight += 1
        if self._in_flight >= self.max_in_flight:
            self._capacity = trio.Event()
            self._capacity_clear = True
        return cast(Request, request)  # not an ErrorReply (mypy narrows no ``type() is``)

    async def _reply_when(self, answer: Awaitable[Reply]) -> None:
        """Send the reply ``answer`` comes to (``Dispatcher.begin``'s rest) once it has."""
        self._reply(await answer)

    def _reply(self, reply: Reply) -> None:
        """Send the reply to a request in flight."""
        # What ``_send`` does, without its calls: once per request. The only request
        # in flight: no other reply is coming to share its write.
        outbox = self.outbox
        outbox.put(self.codec.encode(reply), now=self._in_flight == 1)
        # The events its step held for the reply (risk's and positions' folds, the
        # subscribers' queues) go out now, before this task takes another request.
        self._after_reply.written(at_once=self._in_flight == 1)
        if outbox.queued_bytes > self.max_queued_bytes:
            self._enforce_limits()
        self._in_flight -= 1
        if self._capacity_clear and self._in_flight < self.max_in_flight:
            self._capacity_clear = False
            self._capacity.set()

    def _send(self, reply: Reply, *, now: bool = False) -> None:
        self.outbox.put(self.codec.encode(reply), now=now)
        self._enforce_limits()

    def _enforce_limits(self) -> None:
        """Close the connection if it holds more unsent bytes than its limit."""
        queued = self.outbox.queued_bytes
        if queued > self.max_queued_bytes:
            self._drop(f"{queued} bytes unread, over its limit of {self.max_queued_bytes}")

    def _close_if_stalled(self, why: str) -> bool:
        """Close the connection if it holds over its high-water mark and its client has
        taken nothing for ``stalled_s``; True if so."""
        queued = self.outbox.queued_bytes
        stalled = self.outbox.stalled_for()
        if queued > self.outbox.high_water and stalled >= self.stalled_s:
            self._drop(f"{queued} bytes unread for {stalled:.1f} s {why}")
            return True
        return False

    def _drop(self, reason: str) -> None:
        """Close a connection whose client does not read what it asked for."""
        if self.dropped is None:
            self.dropped = reason
            self.log.warning(
                "client not reading its replies; closing the connection", reason=reason
            )
            self.outbox.discard()
            self._done.cancel()

    def _subscribe(self, request: Subscribe) -> None:
        if self._subscription is not None:
            self._send(
                ErrorReply(
                    id=request.id,
                    error=BadRequest("this connection is already subscribed").to_info(),
                )
            )
            return
        sub = self.gateway.subscribe(frozenset(request.topics), self.subscriber_queue)
        self._subscription = sub
        # The acknowledgement is queued before any event, so it arrives first.
        self._send(OkReply(id=request.id, detail="subscribed: " + ", ".join(request.topics)))
        self._handlers.start_soon(self._forward_events, sub)

    async def _forward_events(self, sub: Subscription[Any]) -> None:
        try:
            while sub.dropped_reason is None:
                # A client that does not read fills the outbox; then we stop
                # taking events, its bounded queue fills, and the bus drops it
                # without ever waiting for it.
                if not await self._room_for_events():
                    return
                try:
                    events = await sub.receive_batch()
                except trio.EndOfChannel:
                    break
                # All that came since the last look, in one go: at most the subscriber's
                # queue bound beyond the high-water mark.
                for event in events:
                    self._send(EventMessage(event=event))
        finally:
            sub.close()
        reason = sub.dropped_reason or "the service closed the subscription"
        self.log.warning("event subscriber dropped", reason=reason)
        self._send(SubscriptionDropped(reason=reason))
        await self._room_for_events()

    async def _room_for_events(self) -> bool:
        """Wait until the outbox is below its high-water mark; False, with the connection
        closed, if meanwhile the client took nothing for ``stalled_s``: what is queued
        for it would be held for as long as it stays connected."""
        while True:
            with trio.move_on_after(self.stalled_s):
                await self.outbox.wait_for_room()
                return True
            if self._close_if_stalled("by an event subscriber"):
                return False
