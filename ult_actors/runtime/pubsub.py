"""Publish/subscribe of events with a bounded queue per subscriber.

Publishing never blocks and never slows the publisher: a subscriber whose
queue is full is dropped, told why through ``Subscription.dropped_reason``,
and its stream ends. This is the back-pressure rule for events (commands use
bounded mailboxes that do block; see ``mailbox.py``).

A subscriber wakes once for every event queued since it last looked:
``receive_batch`` hands them over as one list, in publication order, so an
order's path costs each subscriber (risk, positions, an IPC client) one
wake-up per scheduler round rather than one per event. A subscriber that
only folds events into state it owns can take them with no wake-up at all,
in the publisher's step (``Subscription.fold_inline``).

An order's step run in the task of the connection that asked may hold its
events until that task has written the order's reply (``AfterReply``): the
folds and the subscribers' queues then cost the client nothing, as it reads
its reply meanwhile. Nothing sees the state without them: the task releases
them before it yields, and whatever reads what they change takes them first
(a publish, a subscriber's read, risk's check, a positions query).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import trio

E = TypeVar("E")


class Subscription(Generic[E]):
    """One subscriber's view of a bus: iterate it (or take batches) to receive events."""

    def __init__(
        self,
        bus: EventBus[E],
        accepts: Callable[[E], bool] | None,
        capacity: int,
        kinds: tuple[type[E], ...] | None = None,
    ) -> None:
        self._bus = bus
        #: Which events it takes beyond ``kinds`` (``None``: all of those).
        self.accepts = accepts
        #: The event types it takes (``None``: any), matched as ``isinstance`` does.
        self.kinds = kinds
        self.capacity = capacity
        self._queue: collections.deque[E] = collections.deque()
        #: The reader waiting for events, if it is waiting.
        self._reader = trio.lowlevel.ParkingLot()
        self._closed = False
        #: Why the bus dropped this subscriber, or None while it is live.
        self.dropped_reason: str | None = None
        #: Folds each event in the publisher's step instead (``fold_inline``).
        self._fold: Callable[[E], None] | None = None

    def fold_inline(self, fold: Callable[[E], None]) -> None:
        """Hand each event to ``fold`` as it is published, in the publisher's step, rather
        than queue it for the reader: a subscriber that only folds events into its own
        state (risk's view, the positions book) then costs no task step per batch.

        ``fold`` must not block or publish. An event it raises on (a bug) is queued
        instead and folding inline stops for good, so the reader folds that event in
        its own step and crashes its actor there, not the publisher. Events already
        queued when this is called are read first: order is kept.
        """
        self._fold = fold

    def _enqueue(self, event: E) -> None:
        """Queue ``event`` for the reader, or drop this subscriber if its queue is full."""
        if len(self._queue) >= self.capacity:
            self.dropped_reason = (
                f"subscriber fell behind: {self.capacity} events queued and unread"
            )
            self.close()
            return
        self._queue.append(event)
        if self._reader:
            self._reader.unpark_all()

    @property
    def queued(self) -> int:
        """Events waiting to be read."""
        return len(self._queue)

    async def receive_batch(self) -> list[E]:
        """Every event queued now (at least one), oldest first, waiting for one if none is.

        Raises ``trio.EndOfChannel`` once the subscription is dropped or closed and
        every event queued before that has been read.
        """
        await self._wait()
        return self.drain()

    async def receive(self) -> E:
        """The next event; raises ``trio.EndOfChannel`` once dropped or closed."""
        await self._wait()
        return self._queue.popleft()

    async def _wait(self) -> None:
        """Until an event is queued; ``trio.EndOfChannel`` if none will be."""
        self._bus.release_held()  # held for a reply: out before anyone waits for them
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._queue:
            if self._closed:
                raise trio.EndOfChannel
            await self._reader.park()

    def __aiter__(self) -> Subscription[E]:
        return self

    async def __anext__(self) -> E:
        # A method, not an async generator (which mypyc cannot compile); an event is
        # taken from the queue only when it is asked for.
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def drain(self) -> list[E]:
        """Every event waiting to be read, without waiting for more."""
        self._bus.release_held()
        out = list(self._queue)
        self._queue.clear()
        return out

    def close(self) -> None:
        """Stop receiving (events already queued can still be read); safe to call twice."""
        self._bus._remove(self)
        self._closed = True
        self._reader.unpark_all()


class EventBus(Generic[E]):
    """Fan-out of events to any number of bounded subscribers.

    Each subscriber names the event types it takes (``kinds``); the bus keeps, per
    type published, the subscribers that take it, so an event costs only the
    subscribers of its type, not a filter call for every subscriber.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscription[E]] = []
        #: Per event type published, its subscribers (dropped when subscribers change).
        self._routes: dict[type[E], tuple[Subscription[E], ...]] = {}
        self.published = 0
        #: Events published while the task that published them writes a reply: they go
        #: out once it is written (``AfterReply``), or before anything could read them.
        self._held: list[E] = []

    def subscribe(
        self,
        accepts: Callable[[E], bool] | None = None,
        capacity: int = 1024,
        *,
        kinds: tuple[type[E], ...] | None = None,
    ) -> Subscription[E]:
        """A new subscription to events of ``kinds`` (any type if ``None``) for which
        ``accepts`` (when given) is true."""
        sub = Subscription(self, accepts, capacity, kinds)
        self._subscribers.append(sub)
        self._routes.clear()
        return sub

    def publish(self, event: E) -> None:
        """Offer ``event`` to every subscriber that accepts it; never blocks."""
        if self._held:  # in order: the events held for a reply first
            self.release_held()
        self._deliver(event)

    def hold(self, event: E) -> None:
        """Publish ``event`` once ``release_held`` is called, with the others held, in order.

        Only for ``AfterReply.publish``, which sees that it is called before the
        current task yields."""
        self._held.append(event)

    def release_held(self) -> None:
        """Publish the events held (``hold``) now, in the order they came (if any are:
        whatever reads the state they change calls this first)."""
        if not self._held:
            return
        held, self._held = self._held, []
        for event in held:
            self._deliver(event)

    def _deliver(self, event: E) -> None:
        self.published += 1
        kind = type(event)
        route = self._routes.get(kind)
        if route is None:
            route = self._routes[kind] = tuple(
                sub
                for sub in self._subscribers
                if sub.kinds is None or issubclass(kind, sub.kinds)
            )
        # A tuple made when the subscribers last changed: one leaving during this loop
        # (a full queue closes it) does not disturb it.
        for sub in route:
            accepts = sub.accepts
            if accepts is None or accepts(event):
                # Folded here, not in a method of the subscription: a call less per subscriber
                # and event (risk and positions fold every order event).
                fold = sub._fold
                if fold is not None and not sub._queue:
                    try:
                        fold(event)
                    except Exception:
                        sub._fold = None  # the reader meets it again, in its actor's step
                    else:
                        continue
                sub._enqueue(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _remove(self, sub: Subscription[E]) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
            self._routes.clear()


class AfterReply:
    """Which task writes a reply to a client next, so that an order's events can wait
    for that reply (one per trio run: ``of_this_run``).

    A connection calls ``written`` after it writes each reply. A task whose reply
    went out at once (a lone request's) is then the writer, and an order's step
    run in it (direct entry: the broker's step runs in the asker's task) may
    publish through ``publish``: the events are held until the task's next
    ``written``, which comes before the task yields (a request's answer ends in
    its reply). Any other task publishes at once, as off the request path (a
    stream report, a test calling actors) nothing writes a reply after the
    step. Should the task yield first all the same (a cancel), whatever reads
    what the events change takes them first (``EventBus.publish``, a
    subscriber's read, risk's check, a positions query).
    """

    __slots__ = ("_holding", "_writer")

    def __init__(self) -> None:
        self._writer: trio.lowlevel.Task | None = None
        #: The buses holding events for the writer's reply.
        self._holding: list[EventBus[Any]] = []

    @classmethod
    def of_this_run(cls) -> AfterReply:
        """The one of the current trio run, made on first use."""
        try:
            return _AFTER_REPLY.get()
        except LookupError:
            after = cls()
            _AFTER_REPLY.set(after)
            return after

    def holds(self) -> bool:
        """Whether the current task writes a reply after its step (``publish`` holds)."""
        writer = self._writer
        return writer is not None and trio.lowlevel.current_task() is writer

    def publish(self, bus: EventBus[E], event: E) -> None:
        """Publish ``event`` on ``bus`` once the current task's reply is written; only
        when ``holds`` said so, in the same task step."""
        if bus not in self._holding:
            self._holding.append(bus)
        bus.hold(event)

    def written(self, *, at_once: bool) -> None:
        """The current task wrote a reply (``at_once``: to the socket, as a lone request's
        is): publish what its step held. If it went out at once, the task's next steps
        may hold theirs too; replies queued together (a window) go out later anyway,
        and holding would only cost."""
        if self._holding:
            # Held by the writer's step, so (but for a cancel between) this is the
            # writer: it stays one without asking trio which task this is.
            holding, self._holding = self._holding, []
            for bus in holding:
                bus.release_held()
            if not at_once:
                self._writer = None
        else:
            self._writer = trio.lowlevel.current_task() if at_once else None


_AFTER_REPLY: trio.lowlevel.RunVar[AfterReply] = trio.lowlevel.RunVar("ult_after_reply")
