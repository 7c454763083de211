"""Supervisors with Erlang/OTP semantics, on trio.

A supervisor starts its children in order (each must call ``ctx.started()``
before the next starts), watches them, and when one exits decides by the
child's restart type and the supervisor's strategy:

- restart types: ``permanent`` (always restarted), ``transient`` (restarted
  only after a crash), ``temporary`` (never restarted);
- strategies: ``one_for_one`` (only the exited child), ``one_for_all`` (all
  children), ``rest_for_one`` (the exited child and those started after it);
  siblings are stopped in reverse start order, then restarted in order;
- intensity: more than ``max_restarts`` restarts within ``period_s`` and the
  supervisor stops all its children and fails itself with
  ``SupervisorGaveUp``, which its own parent handles as a crash;
- backoff: before a restart it sleeps a delay drawn uniformly from
  ``[0, min(cap, initial * multiplier**n)]`` ("full jitter"), where ``n``
  counts the child's consecutive restarts and resets once it has run for
  ``stable_after_s``.

Shutdown (cancellation of the supervisor) stops children in reverse start
order, giving each ``shutdown_s`` to finish.

Independent children (``independent=True``), a departure from OTP for the
broker connections: siblings that do not depend on one another are started
all at once (the supervisor counts as started once each has started or
failed) and stopped all at once. One connection's slow connect, or slow
disconnect, then holds up no other: a service's start and stop take its
slowest connection's time, not the sum of them all.

Parking (``park_s``), a departure from OTP for connection actors: the
intensity is then counted per child, and a child that exceeds it on its own
is *parked* instead of failing the supervisor — marked ``failed``, requests in
its mailbox refused at once with ``ActorUnavailable``, and started again after
``park_s`` with a fresh window. One broker down for hours must not take its
healthy siblings (or the process) with it; a crash loop still shows, as a
parked child with its last error. Under ``one_for_one`` each restart waits out
its backoff in its own task, so one child's delay never holds up another's.

Connecting, in a parking supervisor: a child that crashes *before* it calls
``started()`` (a connection that cannot connect) is not crash-looping, the
far side is away. Such failures do not count toward the intensity; the child
is shown ``connecting`` (with its failures in a row and the time of the next
try), its requests are refused at once while it waits, and it is tried again
and again with the backoff capped at ``connect_cap_s``, so it is back at most
that long after the far side is. Parking is left for a child that comes up,
then crashes, over and over.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
import structlog
import trio

from ult_actors.runtime.actor import ActorContext
from ult_actors.runtime.health import ActorHealth, HealthListener, HealthRecord, RestartType
from ult_actors.runtime.mailbox import ActorUnavailable, InFlightUnanswered, Mailbox

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
ActorBody = Callable[[ActorContext[Any]], Awaitable[None]]


class SupervisorGaveUp(Exception):
    """A supervisor stopped: a child exceeded the restart intensity or failed to start."""

    def __init__(
        self,
        supervisor: str,
        child: str,
        cause: BaseException | None,
        reason: str = "exceeded the restart intensity",
    ) -> None:
        self.supervisor = supervisor
        self.child = child
        self.cause = cause
        last = f"{type(cause).__name__}: {cause}" if cause else "exited"
        super().__init__(f"supervisor {supervisor} gave up: child {child} {reason}; last error: {last}")


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Delays between restarts of one child."""

    initial_s: float = 0.1
    cap_s: float = 10.0
    multiplier: float = 2.0
    stable_after_s: float = 30.0

    def bound(self, consecutive: int) -> float:
        """Upper bound of the delay before restart number ``consecutive`` (0-based)."""
        try:
            grown = self.initial_s * self.multiplier**consecutive
        except OverflowError:  # some 1,000 tries in a row: hours of a broker away
            return self.cap_s
        return min(self.cap_s, grown)


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A child as data: what to start, how to restart it, how long it may take to stop."""

    id: str
    start: ActorBody
    restart: RestartType = "permanent"
    shutdown_s: float = 5.0
    #: Owned by the supervisor side, so it outlives incarnations.
    mailbox: Mailbox[Any] | None = None
    #: Set for a nested supervisor (``Supervisor.as_child``).
    supervisor: Supervisor | None = None


class _Child:
    """Runtime bookkeeping of one child."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.health = spec.supervisor.health if spec.supervisor else HealthRecord()
        self.scope: trio.CancelScope | None = None
        self.incarnation = 0
        self.settled = trio.Event()
        self.finished = trio.Event()
        self.finished.set()
        self.stopping = False
        self.running_since: float | None = None
        self.consecutive = 0
        #: The last backoff delay slept before restarting this child.
        self.last_delay: float | None = None
        #: Why the last incarnation ended (None: a normal exit).
        self.exit_error: BaseException | None = None
        #: Restart times of this child alone (used when the supervisor parks): a list, not
        #: a deque (624 bytes empty, 1,000 connections' children never restarted: 0.6 MB);
        #: it holds at most ``max_restarts`` + 1 times.
        self.restart_times: list[float] = []
        #: Whether the current incarnation called ``started()``.
        self.came_up = False


class Supervisor:
    """Starts, watches and restarts a list of children."""

    def __init__(
        self,
        name: str,
        children: list[ChildSpec],
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        period_s: float = 5.0,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        now_ns: Callable[[], int] = time.time_ns,
        listener: HealthListener | None = None,
        park_s: float | None = None,
        connect_cap_s: float = 30.0,
        independent: bool = False,
    ) -> None:
        ids = [c.id for c in children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate child ids in supervisor {name}: {ids}")
        self.name = name
        self.strategy: Strategy = strategy
        self.max_restarts = max_restarts
        self.period_s = period_s
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.now_ns = now_ns
        self.listener = listener
        #: None: OTP intensity (give up and escalate). Else: park a child for this long.
        self.park_s = park_s
        #: Backoff between tries of a child that cannot come up (parking supervisors only).
        self.connect_backoff = msgspec.structs.replace(self.backoff, cap_s=connect_cap_s)
        #: The children depend on no sibling: started together, stopped together.
        self.independent = independent
        self._shutting_down = False
        self.health = HealthRecord()
        self._children = [_Child(spec) for spec in children]
        self._restart_times: deque[float] = deque()
        self._parent: str | None = None
        self._log: Any = structlog.get_logger().bind(actor=name)
        self._nursery: trio.Nursery | None = None
        self._exits_send, self._exits_recv = trio.open_memory_channel[
            tuple[_Child, int, BaseException | None]
        ](math.inf)
        for child in self._children:
            if child.spec.supervisor is not None:
                child.spec.supervisor._adopt(self)

    def add_child(self, spec: ChildSpec) -> None:
        """Append a child before the supervisor runs (it starts last)."""
        if self._nursery is not None:
            raise RuntimeError("add_child is only for building a tree, before it runs")
        if any(c.spec.id == spec.id for c in self._children):
            raise ValueError(f"duplicate child id {spec.id!r} in supervisor {self.name}")
        self._children.append(_Child(spec))
        if spec.supervisor is not None:
            spec.supervisor._adopt(self)

    def _adopt(self, parent: Supervisor) -> None:
        self._parent = parent.name
        if self.listener is None:
            self.listener = parent.listener
        if self.now_ns is time.time_ns:
            self.now_ns = parent.now_ns

    def as_child(self, restart: RestartType = "permanent", shutdown_s: float = 30.0) -> ChildSpec:
        """This supervisor as a child of another."""
        return ChildSpec(
            id=self.name, start=self.run, restart=restart, shutdown_s=shutdown_s, supervisor=self
        )

    # -- health -----------------------------------------------------------

    def child(self, child_id: str) -> _Child:
        """The bookkeeping of one child (for health views and tests)."""
        for child in self._children:
            if child.spec.id == child_id:
                return child
        raise KeyError(child_id)

    def restarts_in_window(self) -> int:
        now = trio.current_time() if self._nursery is not None else 0.0
        return sum(1 for t in self._restart_times if now - t <= self.period_s)

    def _entry(self, child: _Child) -> ActorHealth:
        spec = child.spec
        mailbox = spec.mailbox
        sup = spec.supervisor
        return ActorHealth(
            name=spec.id,
            parent=self.name,
            kind="supervisor" if sup else "actor",
            state=child.health.state,
            restart=spec.restart,
            restarts=child.health.restarts,
            started_at=child.health.started_at,
            last_error=child.health.last_error,
            mailbox_depth=mailbox.depth if mailbox else 0,
            handled=mailbox.handled if mailbox else 0,
            strategy=sup.strategy if sup else None,
            restarts_in_window=sup.restarts_in_window() if sup else 0,
            connect_failures=child.health.connect_failures,
            next_retry_at=child.health.next_retry_at,
        )

    def own_entry(self) -> ActorHealth:
        """This supervisor's own health row (its parent's view of it, or the root's)."""
        return ActorHealth(
            name=self.name,
            parent=self._parent,
            kind="supervisor",
            state=self.health.state,
            restart="permanent",
            restarts=self.health.restarts,
            started_at=self.health.started_at,
            last_error=self.health.last_error,
            mailbox_depth=0,
            handled=0,
            strategy=self.strategy,
            restarts_in_window=self.restarts_in_window(),
        )

    def snapshot(self) -> list[ActorHealth]:
        """Every descendant's health, depth first in start order (self not included)."""
        rows: list[ActorHealth] = []
        for child in self._children:
            rows.append(self._entry(child))
            if child.spec.supervisor is not None:
                rows.extend(child.spec.supervisor.snapshot())
        return rows

    def _changed(self, child: _Child) -> None:
        if self.listener is not None:
            self.listener(self._entry(child))

    # -- running ----------------------------------------------------------

    async def run(self, ctx: ActorContext[Any] | None = None) -> None:
        """Run the children until cancelled, or until the intensity is exceeded."""
        if ctx is not None:
            self._log = ctx.log
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                if self.independent:
                    # All at once, then waited for in turn: no task each to wait for one
                    # (1,000 connections: 1,000 spawns fewer at start).
                    for child in self._children:
                        self._launch(child)
                    for child in self._children:
                        if not child.settled.is_set():  # (a set one's wait is a checkpoint)
                            await child.settled.wait()
                for child in self._children:
                    if not self.independent:
                        await self._start(child)
                    crashed_before_started = (
                        child.finished.is_set() and child.health.state == "starting"
                    )
                    if self.park_s is None and crashed_before_started:
                        # As in OTP, a child that cannot start fails its supervisor:
                        # its later siblings may depend on it (the journal, say).
                        raise SupervisorGaveUp(
                            self.name, child.spec.id, child.exit_error, "failed to start"
                        )
                if ctx is not None:
                    ctx.started()
                await self._watch()
            finally:
                self._shutting_down = True
                with trio.CancelScope(shield=True):
                    await self._stop_children(self._children)
                nursery.cancel_scope.cancel()

    async def _watch(self) -> None:
        async for child, incarnation, error in self._exits_recv:
            if child.stopping or incarnation != child.incarnation:
                continue  # an exit we caused, or a stale report
            await self._on_exit(child, error)

    async def _start(self, child: _Child) -> None:
        self._launch(child)
        await child.settled.wait()

    def _launch(self, child: _Child) -> None:
        """Start ``child``'s next incarnation; ``child.settled`` is set once it started or failed."""
        assert self._nursery is not None
        child.incarnation += 1
        child.stopping = False
        child.came_up = False
        child.running_since = None
        child.settled = trio.Event()
        child.finished = trio.Event()
        child.health.state = "starting"
        self._changed(child)
        self._nursery.start_soon(self._run_child, child, child.incarnation)

    async def _run_child(self, child: _Child, incarnation: int) -> None:
        spec = child.spec

        def started() -> None:
            if incarnation == child.incarnation and child.health.state != "running":
                child.came_up = True
                child.health.state = "running"
                child.health.started_at = self.now_ns()
                child.health.connect_failures = 0
                child.health.next_retry_at = None
                child.running_since = trio.current_time()
                self._changed(child)
            child.settled.set()

        def failed(error: BaseException) -> None:
            child.health.state = "failed"
            child.health.record_error(error, self.now_ns())
            self._changed(child)
            child.settled.set()

        ctx: ActorContext[Any] = ActorContext(
            spec.id,
            spec.mailbox,
            incarnation=incarnation,
            on_started=started,
            on_failed=failed,
        )
        error: BaseException | None = None
        try:
            # Shielded: a child stops only when its supervisor says so, which
            # is what makes shutdown go in reverse start order.
            with trio.CancelScope(shield=True) as scope:
                child.scope = scope
                try:
                    await spec.start(ctx)
                except* Exception as crash:  # Cancelled and KeyboardInterrupt pass
                    # A crash, or a task's error beside the Cancelled of a stop (a
                    # connection lost just then): the exit's error either way, never
                    # the supervisor's, which would fail the shutdown or the restart.
                    error = _unwrap(crash)
        finally:
            if spec.mailbox is not None:
                spec.mailbox.requeue_in_flight(error or RuntimeError("actor stopped"))
            child.exit_error = error
            child.finished.set()
            child.settled.set()
        self._exits_send.send_nowait((child, incarnation, error))

    async def _on_exit(self, child: _Child, error: BaseException | None) -> None:
        spec = child.spec
        now = trio.current_time()
        if error is not None:
            child.health.record_error(error, self.now_ns())
        should_restart = spec.restart == "permanent" or (
            spec.restart == "transient" and error is not None
        )
        if not should_restart:
            child.health.state = "failed" if error is not None else "stopped"
            self._changed(child)
            if error is not None:
                self._log.error(
                    "actor crashed; not restarted", child=spec.id, error=_describe(error)
                )
            return
        if self.park_s is not None and error is not None and not child.came_up:
            self._retry_connect(child, error)
            return

        times = self._restart_times
        times.append(now)
        while times and now - times[0] > self.period_s:
            times.popleft()
        child.restart_times = [t for t in child.restart_times if now - t <= self.period_s]
        child.restart_times.append(now)
        window = child.restart_times if self.park_s is not None else self._restart_times
        if len(window) > self.max_restarts and self.park_s is not None:
            self._park(child, error)
            return
        if len(window) > self.max_restarts:
            child.health.state = "failed"
            self._changed(child)
            self._log.error(
                "restart intensity exceeded; supervisor gives up",
                child=spec.id,
                restarts=len(self._restart_times),
                period_s=self.period_s,
                error=_describe(error),
            )
            raise SupervisorGaveUp(self.name, spec.id, error)

        index = self._children.index(child)
        if self.strategy == "one_for_one":
            group = [child]
        elif self.strategy == "one_for_all":
            group = list(self._children)
        else:
            group = self._children[index:]
        await self._stop_children([c for c in group if c is not child])

        if (
            child.running_since is not None
            and now - child.running_since >= self.backoff.stable_after_s
        ):
            child.consecutive = 0
        delay = self.rng.uniform(0.0, self.backoff.bound(child.consecutive))
        child.consecutive += 1
        child.last_delay = delay
        for member in group:
            member.health.state = "restarting"
            self._changed(member)
        self._log.warning(
            "actor exited; restarting",
            child=spec.id,
            cause=_describe(error),
            strategy=self.strategy,
            restarting=[c.spec.id for c in group],
            delay_s=round(delay, 4),
            restart=child.health.restarts + 1,
        )
        if self.strategy == "one_for_one":
            assert self._nursery is not None
            self._nursery.start_soon(self._restart_after, child, delay)
            return
        await trio.sleep(delay)
        for member in group:
            if member is not child and member.spec.restart == "temporary":
                member.health.state = "stopped"
                self._changed(member)
                continue
            member.health.restarts += 1
            await self._start(member)

    async def _restart_after(self, child: _Child, delay: float) -> None:
        """One child's restart, on its own task so siblings' exits are handled meanwhile."""
        await trio.sleep(delay)
        if self._shutting_down:
            return
        child.health.restarts += 1
        await self._start(child)

    def _retry_connect(self, child: _Child, error: BaseException) -> None:
        """Try a child that failed before it came up again, after a capped backoff.

        Not counted toward the intensity: the far side being away is not a
        crash loop, and parking it would add ``park_s`` to every outage.
        """
        assert self._nursery is not None
        health = child.health
        delay = self.rng.uniform(0.0, self.connect_backoff.bound(health.connect_failures))
        health.connect_failures += 1
        health.state = "connecting"
        health.next_retry_at = self.now_ns() + int(delay * 1e9)
        child.last_delay = delay
        self._changed(child)
        self._log.warning(
            "actor failed before it came up; trying again",
            child=child.spec.id,
            failures=health.connect_failures,
            delay_s=round(delay, 4),
            error=_describe(error),
        )
        reason = ActorUnavailable(
            f"{child.spec.id} cannot connect ({health.connect_failures} tries in a row,"
            f" last: {_describe(error)}); next try in {delay:.1f}s"
        )
        self._nursery.start_soon(self._refuse_then_restart, child, reason, delay)

    def _park(self, child: _Child, error: BaseException | None) -> None:
        """Leave a crash-looping child down for ``park_s``, refusing its requests, then retry."""
        assert self._nursery is not None and self.park_s is not None
        child.health.state = "failed"
        self._changed(child)
        self._log.error(
            "actor exceeded its restart intensity; parked",
            child=child.spec.id,
            restarts=len(child.restart_times),
            period_s=self.period_s,
            retry_in_s=self.park_s,
            error=_describe(error),
        )
        self._nursery.start_soon(self._unpark_after, child, error, self.park_s)

    async def _unpark_after(
        self, child: _Child, error: BaseException | None, park_s: float
    ) -> None:
        reason = ActorUnavailable(
            f"{child.spec.id} is down after repeated failures"
            f" (last: {_describe(error)}); retrying in {park_s:g}s"
        )
        await self._refuse_for(child, reason, park_s)
        child.restart_times.clear()
        child.consecutive = 0
        self._log.info("retrying parked actor", child=child.spec.id)
        await self._restart_after(child, 0.0)

    async def _refuse_then_restart(
        self, child: _Child, reason: ActorUnavailable, delay: float
    ) -> None:
        await self._refuse_for(child, reason, delay)
        await self._restart_after(child, 0.0)

    async def _refuse_for(self, child: _Child, reason: ActorUnavailable, seconds: float) -> None:
        """Answer every request to a child that is down with ``reason``, for ``seconds``.

        A request an earlier incarnation was handling when it went down may have
        taken effect (an order sent): its answer says so (``InFlightUnanswered``).
        """
        mailbox = child.spec.mailbox
        with trio.move_on_after(seconds):
            while mailbox is not None:
                env = await mailbox.receive()
                if env.reply is not None:
                    if env.deliveries > 0:
                        lost = f"{reason}; it went down with this request in flight"
                        env.reply.fail(InFlightUnanswered(lost))
                    else:
                        env.reply.fail(reason)
                    mailbox.answered(env)

    async def _stop_children(self, children: list[_Child]) -> None:
        if self.independent and len(children) > 1:
            async with trio.open_nursery() as stopping:
                for child in children:
                    stopping.start_soon(self._stop_child, child)
            return
        for child in reversed(children):
            await self._stop_child(child)

    async def _stop_child(self, child: _Child) -> None:
        if child.finished.is_set():
            if child.health.state in ("running", "starting"):
                child.health.state = "stopped"
            return
        child.stopping = True
        if child.scope is not None:
            child.scope.cancel()
        with trio.move_on_after(child.spec.shutdown_s):
            await child.finished.wait()
        if not child.finished.is_set():
            self._log.error(
                "actor did not stop in time",
                child=child.spec.id,
                timeout_s=child.spec.shutdown_s,
            )
        if child.health.state != "failed":
            child.health.state = "stopped"
        self._changed(child)


def _unwrap(exc: BaseException) -> BaseException:
    """The single real error inside nested exception groups, when there is one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(error: BaseException | None) -> str:
    return "normal exit" if error is None else f"{type(error).__name__}: {error}"
