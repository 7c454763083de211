"""Mailboxes, envelopes and request/reply.

A ``Mailbox`` belongs to the supervisor, not to the actor incarnation that
reads it, so a message sent while an actor restarts waits for the next
incarnation. It is bounded: ``send`` waits while it is full, which pushes
back on whoever is producing (ultimately the IPC client's socket);
``send_nowait`` raises ``MailboxFull`` instead, for producers that must not
block.

A request carries its reply slot (like Erlang's ``From``): the actor answers
the asker directly. A request has a deadline; one still queued when its
deadline passes is dropped unread, and the asker gets ``CallTimeout``; one
taken and not answered in time is failed with it by the run's
``CallTimeouts`` (no cancel scope per call).

Lanes: a mailbox may sort messages into priority lanes (``lane_of``; lane
0 first), each bounded by ``capacity`` on its own, so a full lane (say,
thousands of queued new orders) neither delays nor blocks the senders of
another (a position query, a cancel). ``receive(lanes=...)`` reads some
lanes only, so an actor can serve each lane from its own task.

Draining: a reader wakes once for everything waiting, and an arrival wakes
one waiting reader of its lane, so several tasks can serve one lane (a
broker's order workers) without all waking for each message. ``receive`` takes a
queued message without a scheduler round (up to ``_DRAIN_RUN`` in a row), so
a burst of orders costs one wake-up of the actor, not one per order. Each
message is still picked when it is taken, the lowest lane first, so a
message arriving in a higher lane mid-burst is read next.

Redelivery: a request taken by an incarnation that then crashes before
answering is put back at the head of the mailbox for the next incarnation
(at most ``max_deliveries`` times, then it is answered with the crash). So
handlers of requests must be idempotent — for orders the client order id
makes them so. The request whose own handler raised (``poisoned``) is the
exception: it is answered with ``ActorCrashed`` at once and never
redelivered, so one poison message crashes its actor once and spends the
supervisor's intensity once; only the innocent bystanders of that crash
(requests in flight in other handlers) are redelivered.
"""

from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar, overload

import trio
from trio.lowlevel import checkpoint_if_cancelled

# Defined apart so this module compiles (mypyc): re-exported, their home for callers.
from ult_actors.runtime.mailbox_errors import ActorCrashed as ActorCrashed
from ult_actors.runtime.mailbox_errors import ActorUnavailable as ActorUnavailable
from ult_actors.runtime.mailbox_errors import CallTimeout as CallTimeout
from ult_actors.runtime.mailbox_errors import InFlightUnanswered as InFlightUnanswered
from ult_actors.runtime.mailbox_errors import MailboxFull as MailboxFull

M = TypeVar("M")
R = TypeVar("R")


#: How many messages that crashed their actor a mailbox remembers (``Mailbox.poison``).
_POISON_KEPT = 256
#: Messages a reader takes in a row without yielding to the scheduler (``Mailbox.receive``).
_DRAIN_RUN = 128


class ReplySlot:
    """A one-shot answer: set once by the actor, awaited by one asker."""

    __slots__ = ("_done", "_error", "_value", "_waiter", "asker_steps", "step", "timer")

    def __init__(self) -> None:
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        #: The asker parked in ``wait``, if it is.
        self._waiter: trio.lowlevel.Task | None = None
        #: The deadline bucket this slot waits in (``CallTimeouts``), while it does.
        self.timer: dict[ReplySlot, float] | None = None
        #: The asker's own task runs the handler now and will run ``step`` once the
        #: handler has returned (``direct.DirectEntry``): a request handed on may go
        #: to its next actor's step that way (``direct.hand_on``).
        self.asker_steps = False
        #: The next actor's step the asker runs once the handler has returned.
        self.step: tuple[StepDoor[Any], Envelope[Any]] | None = None

    @property
    def done(self) -> bool:
        return self._done

    def set(self, value: Any) -> None:
        """Answer with a value; later answers are ignored."""
        if not self._done:
            self._value = value
            self._answered()

    def fail(self, error: BaseException) -> None:
        """Answer with an error the asker will raise; later answers are ignored."""
        if not self._done:
            self._error = error
            self._answered()

    def _answered(self) -> None:
        self._done = True
        if self.timer is not None:
            del self.timer[self]
            self.timer = None
        if self._waiter is not None:
            trio.lowlevel.reschedule(self._waiter)
            self._waiter = None

    async def wait(self) -> Any:
        """The answer (or its error raised), once there is one."""
        if self._done:
            await checkpoint_if_cancelled()  # a global of this module: no attribute reads
        else:
            self._waiter = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        if self._error is not None:
            raise self._error
        return self._value


#: Width of ``CallTimeouts``' deadline buckets: a call's ``CallTimeout`` comes up to this late.
_TIMEOUT_GRAIN_S = 0.01


class CallTimeouts:
    """Answers ``CallTimeout`` to the reply slots of calls whose time is up.

    One task per trio run sleeps until the earliest deadline, where a cancel
    scope per call cost a third of a call (entering and leaving one: ~6 of
    ~20 us). Deadlines are kept in buckets of ``_TIMEOUT_GRAIN_S``; a slot
    answered in time leaves its bucket at once, so a bucket due holds only
    the calls that timed out, and under a steady stream of calls with one
    timeout the task wakes at most once per bucket, not once per call.
    """

    def __init__(self) -> None:
        #: Slots by bucket (its end, in grains), each with its call's timeout (for the message).
        self._buckets: dict[int, dict[ReplySlot, float]] = {}
        #: The buckets' keys, earliest first (a heap).
        self._keys: list[int] = []
        #: The keeper's sleep, moved earlier when an earlier bucket appears.
        self._sleep: trio.CancelScope | None = None

    @classmethod
    def of_this_run(cls) -> CallTimeouts:
        """The keeper of the current trio run, started on first use."""
        try:
            return _CALL_TIMEOUTS.get()
        except LookupError:
            keeper = cls()
            _CALL_TIMEOUTS.set(keeper)
            trio.lowlevel.spawn_system_task(keeper._keep, name="ult call timeouts")
            return keeper

    def add(self, slot: ReplySlot, deadline: float, timeout: float) -> None:
        """Fail ``slot`` with ``CallTimeout`` if it is not answered by ``deadline`` (trio time)."""
        key = math.ceil(deadline / _TIMEOUT_GRAIN_S)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            heapq.heappush(self._keys, key)
            if self._sleep is not None and self._keys[0] == key:
                self._sleep.deadline = key * _TIMEOUT_GRAIN_S  # earlier than it sleeps now
        bucket[slot] = timeout
        slot.timer = bucket

    async def _keep(self) -> None:
        while True:
            wake_at = self._keys[0] * _TIMEOUT_GRAIN_S if self._keys else math.inf
            with trio.CancelScope(deadline=wake_at) as self._sleep:
                await trio.sleep_forever()
            now = trio.current_time()
            while self._keys and self._keys[0] * _TIMEOUT_GRAIN_S <= now:
                for slot, timeout in self._buckets.pop(heapq.heappop(self._keys)).items():
                    slot.timer = None  # its bucket is gone already
                    slot.fail(CallTimeout(f"no answer within {timeout:g}s"))


_CALL_TIMEOUTS: trio.lowlevel.RunVar[CallTimeouts] = trio.lowlevel.RunVar("ult_call_timeouts")


class Envelope(Generic[M]):
    """A message in a mailbox, with its reply slot (for requests) and deadline."""

    __slots__ = ("deadline", "deliveries", "lane", "msg", "reply")

    def __init__(self, msg: M, reply: ReplySlot | None, deadline: float, lane: int = 0) -> None:
        self.msg = msg
        self.reply = reply
        #: trio clock time after which nobody waits for this any more.
        self.deadline = deadline
        self.deliveries = 0
        #: The mailbox lane it waits in (0 is read first).
        self.lane = lane

    @property
    def is_request(self) -> bool:
        return self.reply is not None

    def expired(self) -> bool:
        return trio.current_time() > self.deadline


class DirectDoor(Generic[M]):
    """How ``call`` runs a request in its own task when its actor is idle (``direct.py``).

    A base class, not a protocol: the compiled build calls its methods natively (a
    protocol's calls go through Python's, ~450 instructions each, twice a call).
    Made inside the trio run whose actor opens it.
    """

    __slots__ = ("clock",)

    def __init__(self) -> None:
        #: The run's clock: ``call`` reads the time from it, as ``trio.current_time``
        #: does, without that function's two frames of interpreted Python (~1.2k
        #: instructions a call).
        self.clock: trio.abc.Clock = trio.lowlevel.current_clock()

    def can_enter(self) -> bool:
        """Whether a request may be run now by its caller."""
        raise NotImplementedError

    def begin(self, env: Envelope[M], now: float) -> Awaitable[None] | None:
        """Run the actor's handler for ``env`` in the caller's task as far as nothing in
        it waits: ``None`` once it is over, else the rest, for the caller to await.

        ``now`` is the time the caller read from ``clock`` as it made ``env`` (nothing
        has waited since): what the handler's plain calls take for the time, rather
        than reading the clock again (~0.85k instructions a read)."""
        raise NotImplementedError


class StepDoor(Protocol[M]):
    """How a request handed on to this mailbox may be run by its asker's task instead
    (``direct.hand_on``, ``direct.StepEntry``)."""

    def can_take(self, msg: M) -> bool: ...

    def take(self, env: Envelope[M]) -> None: ...

    def begin_step(self, env: Envelope[M]) -> Awaitable[None] | None: ...

    def drop_step(self, env: Envelope[M]) -> None: ...


class Mailbox(Generic[M]):
    """A bounded, typed queue that outlives the actor incarnations reading it."""

    def __init__(
        self,
        capacity: int = 1024,
        *,
        max_deliveries: int = 3,
        lanes: int = 1,
        lane_of: Callable[[M], int] | None = None,
    ) -> None:
        """``capacity`` bounds each of ``lanes`` lanes; ``lane_of`` picks a message's lane."""
        self.capacity = capacity
        self.max_deliveries = max_deliveries
        self._lane_of = lane_of
        #: Each lane's messages, oldest first (requeued requests go back to the head).
        self._lanes = [collections.deque[Envelope[M]]() for _ in range(lanes)]
        #: Senders waiting for room in each lane, in the order they came, with what
        #: they send: a message taken moves the first one's in (so they stay in order).
        self._blocked: list[dict[trio.lowlevel.Task, Envelope[M]]] = [{} for _ in range(lanes)]
        #: Readers waiting for a message, with the lanes they read (None: all).
        self._readers: dict[trio.lowlevel.Task, Sequence[int] | None] = {}
        #: Requests taken by the current incarnation and not answered yet.
        self.in_flight: dict[Envelope[M], None] = {}  # an ordered set
        #: The latest messages whose handler crashed the actor (bounded), so an incarnation
        #: can tell one coming back another way (a journal replayed at start) and not run
        #: it a second time.
        self.poison: collections.deque[M] = collections.deque(maxlen=_POISON_KEPT)
        self.handled = 0
        self.expired = 0
        #: Messages taken in a row without a scheduler round (see ``_next``).
        self._unyielded = 0
        #: The serving incarnation's door for callers, when it has one (``DirectEntry``).
        self.direct: DirectDoor[M] | None = None
        #: The serving incarnation's door for requests handed on by an asker's task.
        self.step_door: StepDoor[M] | None = None

    @property
    def depth(self) -> int:
        """Messages waiting to be read."""
        # Read per order (direct entry, a step's door, risk's gate): a compiled loop, not
        # ``sum(map(len, ...))`` (two calls through Python's, ~2k instructions).
        total = 0
        for lane in self._lanes:
            total += len(lane)
        return total

    def envelope(
        self, msg: M, reply: ReplySlot | None, timeout: float, deadline: float | None
    ) -> Envelope[M]:
        """``msg``'s envelope for this mailbox (its lane), due at ``deadline`` or in ``timeout``."""
        if deadline is None:
            deadline = trio.current_time() + timeout
        return Envelope(msg, reply, deadline, self._lane(msg))

    def _lane(self, msg: M) -> int:
        return self._lane_of(msg) if self._lane_of is not None else 0

    async def send(
        self,
        msg: M,
        *,
        reply: ReplySlot | None = None,
        timeout: float = 30.0,
        deadline: float | None = None,
    ) -> None:
        """Queue ``msg``, waiting while its lane is full; it expires after ``timeout``
        (or at ``deadline``, trio time, when given: a request handed on keeps its own)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        env = self.envelope(msg, reply, timeout, deadline)
        queue = self._lanes[env.lane]
        if len(queue) < self.capacity:
            # With room, hand over without yielding: an order crosses three mailboxes,
            # and a scheduler round per hop on the sending side was ~10 % of its CPU.
            queue.append(env)
            self._arrived(env.lane)
            return
        task = trio.lowlevel.current_task()
        blocked = self._blocked[env.lane]
        blocked[task] = env  # queued by the reader that makes room (see ``_take``)

        def abort(_: object) -> trio.lowlevel.Abort:
            del blocked[task]
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def has_room(self, msg: M) -> bool:
        """Whether ``send_nowait(msg)`` would queue it now."""
        return len(self._lanes[self._lane(msg)]) < self.capacity

    def send_nowait(
        self,
        msg: M,
        *,
        reply: ReplySlot | None = None,
        timeout: float = 30.0,
        deadline: float | None = None,
    ) -> None:
        """Queue ``msg`` or raise ``MailboxFull``; ``timeout`` and ``deadline`` as for ``send``."""
        self._queue_nowait(self.envelope(msg, reply, timeout, deadline))

    def _queue_nowait(self, env: Envelope[M]) -> None:
        queue = self._lanes[env.lane]
        if len(queue) >= self.capacity:
            raise MailboxFull(f"mailbox full ({self.capacity} messages)")
        queue.append(env)
        self._arrived(env.lane)

    def _arrived(self, lane: int) -> None:
        """Wake one reader waiting for ``lane``, the longest waiting: one message needs
        one reader (a reader of other lanes, or a second one of this lane, would wake
        for nothing). A woken reader takes whatever is queued when it runs, so a
        message another reader took first costs it only a look."""
        for task, lanes in self._readers.items():
            if lanes is None or lane in lanes:
                del self._readers[task]  # and stop iterating: the dict changed
                trio.lowlevel.reschedule(task)
                return

    async def _wait_for(self, lanes: Sequence[int] | None) -> None:
        """Sleep until a message arrives in ``lanes`` (all, by default)."""
        task = trio.lowlevel.current_task()
        self._readers[task] = lanes

        def abort(_: object) -> trio.lowlevel.Abort:
            del self._readers[task]
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _take(self, lanes: Sequence[int] | None) -> Envelope[M] | None:
        """The next queued message of ``lanes`` (all, by default), the lowest lane first."""
        for lane in range(len(self._lanes)) if lanes is None else lanes:
            queue = self._lanes[lane]
            if queue:
                env = queue.popleft()
                blocked = self._blocked[lane]
                if blocked:  # room now: the longest-waiting sender's message goes in
                    task = next(iter(blocked))
                    queue.append(blocked.pop(task))
                    trio.lowlevel.reschedule(task)
                    self._arrived(lane)  # a reader idle meanwhile serves it
                return env
        return None

    async def _next(self, lanes: Sequence[int] | None) -> Envelope[M]:
        await trio.lowlevel.checkpoint_if_cancelled()
        env = self._take(lanes)
        if env is not None:
            # Drain what is waiting without a scheduler round per message: the reader
            # woke once for all of it. A long run still yields now and then, so other
            # tasks (the senders among them) get their turn.
            self._unyielded += 1
            if self._unyielded >= _DRAIN_RUN:
                self._unyielded = 0
                await trio.lowlevel.cancel_shielded_checkpoint()  # taken: not lost to a cancel
            return env
        self._unyielded = 0
        while (env := self._take(lanes)) is None:
            await self._wait_for(lanes)
        return env

    def _delivered(self, env: Envelope[M]) -> bool:
        """Count ``env`` as taken; ``False`` (and the asker told) if nobody waits for it now."""
        if env.reply is not None and (env.reply.done or env.expired()):
            self.expired += 1
            env.reply.fail(CallTimeout("request expired in the mailbox"))
            return False
        self.take(env)
        return True

    def take(self, env: Envelope[M]) -> None:
        """Count ``env`` as handled by the current incarnation (in flight until answered)."""
        env.deliveries += 1
        self.handled += 1
        if env.reply is not None:
            self.in_flight[env] = None

    async def receive(self, lanes: Sequence[int] | None = None) -> Envelope[M]:
        """The next live message (of ``lanes`` only, if given); expired requests are dropped."""
        while True:
            env = await self._next(lanes)
            if self._delivered(env):
                return env

    def receive_nowait(self, lanes: Sequence[int] | None = None) -> Envelope[M]:
        """``receive`` without waiting: ``trio.WouldBlock`` when nothing live is queued."""
        while (env := self._take(lanes)) is not None:
            if self._delivered(env):
                return env
        raise trio.WouldBlock

    def put_back(self, env: Envelope[M]) -> None:
        """Return a taken request, unhandled, to the head of its lane (a step not run)."""
        self.in_flight.pop(env, None)
        self._lanes[env.lane].appendleft(env)
        self._arrived(env.lane)

    def answered(self, env: Envelope[M]) -> None:
        """Forget a request once it has been answered."""
        in_flight = self.in_flight
        if env in in_flight:  # compiled: two dict primitives, cheaper than ``pop``'s method call
            del in_flight[env]

    def poisoned(self, env: Envelope[M], actor: str, error: BaseException) -> None:
        """``env``'s own handler raised ``error``: answer it with ``ActorCrashed``, never
        redeliver it. A request already answered or handed on (no longer in flight) is
        left alone: whoever holds its reply slot now answers it."""
        self.poison.append(env.msg)
        if env.reply is None or env not in self.in_flight:
            return
        del self.in_flight[env]
        # The type only: an exception's text may quote anything, and this goes to the client.
        env.reply.fail(
            ActorCrashed(
                f"this request crashed actor {actor} ({type(error).__name__});"
                " it was not retried"
            )
        )

    def requeue_in_flight(self, cause: BaseException) -> int:
        """After a crash: unanswered requests go back to the head of the queue.

        These are bystanders (the request that crashed the actor was answered by
        ``poisoned`` already). One that has already been delivered
        ``max_deliveries`` times is answered with ``ActorCrashed`` instead, in case
        a crash no handler owned keeps recurring while it is in flight. Returns how
        many were requeued.
        """
        requeued = 0
        for env in reversed(self.in_flight):  # appendleft in reverse keeps arrival order
            assert env.reply is not None
            if env.reply.done:
                continue
            if env.deliveries >= self.max_deliveries:
                env.reply.fail(
                    ActorCrashed(
                        f"actor crashed {env.deliveries} times with this request in flight"
                        f" ({type(cause).__name__})",
                        cause=cause,
                    )
                )
                continue
            self._lanes[env.lane].appendleft(env)
            requeued += 1
        self.in_flight.clear()
        return requeued


class Asked:
    """A request ``ask`` sent: answered already (``answered``), or to wait for (``wait``)."""

    __slots__ = ("_rest", "deadline", "slot", "timeout")

    def __init__(
        self, slot: ReplySlot, deadline: float, timeout: float, rest: Awaitable[None] | None
    ) -> None:
        self.slot = slot
        self.deadline = deadline
        self.timeout = timeout
        #: What is left of the actor's handler the asker's task began (``DirectDoor``).
        self._rest = rest

    def answered(self) -> bool:
        """Whether the answer is here, nothing left to run for it."""
        return self._rest is None and self.slot._done

    def answer(self) -> Any:
        """The answer (or its error raised); only once ``answered``."""
        slot = self.slot
        if slot._error is not None:
            raise slot._error
        return slot._value

    async def wait(self) -> Any:
        """The answer (or its error raised), once there is one; ``CallTimeout`` past
        the deadline (timed from when the actor's handler run here waits no more)."""
        rest = self._rest
        if rest is not None:
            self._rest = None
            await rest
        slot = self.slot
        if not slot._done:
            CallTimeouts.of_this_run().add(slot, self.deadline, self.timeout)
        return await slot.wait()


def ask(mailbox: Mailbox[M], msg: M, *, timeout: float) -> Asked | None:
    """Send a request without waiting, as ``call`` does, and without its checkpoint (the
    caller's own): to an idle actor that opened its door, its handler runs here as far
    as nothing in it waits (``direct.py``). ``None``: nothing sent, as ``msg``'s lane is
    full (or ``timeout`` is not finite): ``call`` waits for room.

    A request answered here (most, to an idle router whose broker's step waits for
    nothing) costs its asker no coroutine and no scheduler checkpoint on this side.
    """
    lane = mailbox._lane(msg)  # once: read per order (``has_room`` and ``_envelope`` each did)
    # ``-inf < timeout < inf`` is ``math.isfinite(timeout)`` (NaN fails both) without a call.
    if len(mailbox._lanes[lane]) >= mailbox.capacity or not -math.inf < timeout < math.inf:
        return None
    slot = ReplySlot()
    door = mailbox.direct
    now = trio.current_time() if door is None else door.clock.current_time()
    deadline = now + timeout
    env = Envelope(msg, slot, deadline, lane)
    rest: Awaitable[None] | None = None
    if door is not None and door.can_enter():
        rest = door.begin(env, now)
    else:
        mailbox._queue_nowait(env)
    return Asked(slot, deadline, timeout, rest)


@overload
async def call(mailbox: Mailbox[M], msg: M, *, timeout: float = 10.0) -> object: ...
@overload
async def call(mailbox: Mailbox[M], msg: M, *, timeout: float = 10.0, answer: type[R]) -> R: ...
async def call(
    mailbox: Mailbox[M], msg: M, *, timeout: float = 10.0, answer: type[R] | None = None
) -> object:
    """Send a request and wait for its answer; ``CallTimeout`` past ``timeout``.

    To an idle actor that opened its door (``serve_mailbox(direct=True)``) the
    request is not sent: its handler runs here, in the caller's task (``direct.py``).
    ``answer`` is the type the answer must have (checked): the result is typed
    as such. Without it the answer is an ``object`` the caller narrows.
    """
    await checkpoint_if_cancelled()  # a global of this module: no attribute reads
    asked = ask(mailbox, msg, timeout=timeout)
    if asked is not None:
        # The common case: no wait to send, and the run's keeper times the answer out.
        value = await asked.wait()
    else:
        slot = ReplySlot()
        with trio.move_on_after(timeout) as scope:
            await mailbox.send(msg, reply=slot, timeout=timeout)
            value = await slot.wait()
        if scope.cancelled_caught:
            slot.fail(CallTimeout("no answer"))  # so the actor skips it if still queued
            raise CallTimeout(f"no answer within {timeout:g}s")
    if answer is not None and not isinstance(value, answer):
        raise TypeError(
            f"{type(msg).__name__} was answered with type {type(value).__name__},"
            f" not {answer.__name__}"
        )
    return value
