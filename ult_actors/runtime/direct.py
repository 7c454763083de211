"""Direct entry: a caller runs an idle actor's handler for its request in its own step.

A request costs its actor a wake-up: a task step, and on a lone request a
scheduler round, to run a handler that may take a few microseconds. When the
actor is idle (its task waits for mail and none is queued), it would take
that request next anyway, so ``call`` runs the handler itself, in the
caller's task (``serve_mailbox(..., direct=True)`` opens the door). The actor
stays an actor:

- one message at a time: while a caller runs the handler the door is shut,
  later requests queue in the mailbox, and the actor's task, woken for one,
  waits for the run to end before it handles it;
- a handler that raises crashes the actor, not the caller: the request is
  answered with ``ActorCrashed`` (as a poisoned request is) and the error is
  raised in the actor's own task, so its supervisor restarts it as before;
- the request is counted as handled and is in flight in the mailbox while it
  runs, like one the actor's task took.

A handler run that way may hand its request on to the next actor's step in
the same task (``hand_on``): the asker's task runs that step once the handler
has returned, so this actor's door is open again meanwhile. The next actor
keeps its own rules for it (``StepEntry``).

What differs is whose cancel scopes the handler runs under: a caller cancelled
at one of the handler's checkpoints leaves the request there, unanswered (its
asker is gone), as a crash would have left it; handlers already cope with that,
since a crash redelivers. And a handler that has to wait (a full mailbox
further on) holds its caller until it is done; the call's timeout runs from
then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

import trio

from ult_actors.runtime.mailbox import CallTimeout, DirectDoor, Envelope, Mailbox

if TYPE_CHECKING:
    from ult_actors.runtime.actor import ActorContext

M = TypeVar("M")
N = TypeVar("N")


class DirectEntry(DirectDoor[M]):
    """The door of one actor incarnation's mailbox loop (``serve_mailbox(direct=True)``).

    With ``begin`` (the handler begun by a plain call: ``None`` once it is over, else
    the rest to await) a caller's run needs no coroutine of this door's own while
    nothing in it waits; without it the handler is the rest.
    """

    __slots__ = (
        "_begin", "_crash", "_ctx", "_handle", "_idle", "_mailbox", "_running", "_scope",
        "_waiter",
    )  # fmt: skip

    def __init__(
        self,
        ctx: ActorContext[M],
        handle: Callable[[Envelope[M]], Awaitable[None]],
        begin: Callable[[Envelope[M], float], Awaitable[None] | None] | None = None,
    ) -> None:
        super().__init__()
        self._ctx = ctx
        self._mailbox = ctx.mailbox  # read per call: not through the property
        self._handle = handle
        self._begin = begin
        #: The actor's task waits for mail (none was queued when it began to).
        self._idle = False
        #: A caller runs the handler now.
        self._running = False
        #: The actor's task, waiting for a caller's run to end.
        self._waiter: trio.lowlevel.Task | None = None
        #: What a caller's run raised: the actor's task raises it.
        self._crash: Exception | None = None
        self._scope: trio.CancelScope | None = None

    def can_enter(self) -> bool:
        """Whether a request may be run now by its caller: the actor would take it next."""
        return (
            self._idle and not self._running and self._crash is None and not self._mailbox.depth
        )

    def begin(self, env: Envelope[M], now: float) -> Awaitable[None] | None:
        """Run the actor's handler for ``env`` in this task, as far as nothing in it waits,
        then the step it handed on (``hand_on``) likewise; only after ``can_enter``.
        ``None`` once both are over, else the rest, which the caller awaits at once.

        ``now``: the time the caller read as it made ``env``. Both are begun by plain
        calls, with nothing waiting between, so it is still the time for them (the
        handler's own checks, the step's deadline): the clock is not read again.

        A handler that raises has crashed the actor: ``env`` is answered with
        ``ActorCrashed`` and the error goes to the actor's task; this returns.
        """
        reply = env.reply
        self._running = True
        self._mailbox.take(env)
        if reply is not None:
            reply.asker_steps = True
        begin = self._begin
        if begin is None:
            return self._run(env, self._handle(env))
        try:
            rest = begin(env, now)
        except Exception as exc:
            self._crashed(env, exc)
        except BaseException:
            self._cancelled(env)
            self._ended(env)
            raise
        else:
            if rest is not None:
                return self._run(env, rest)
        self._ended(env)
        return _begin_handed(env, now)

    async def _run(self, env: Envelope[M], rest: Awaitable[None]) -> None:
        """The rest of a handler begun by ``begin``, then the step it handed on."""
        try:
            await rest
        except Exception as exc:
            self._crashed(env, exc)
        except BaseException:
            self._cancelled(env)
            raise
        finally:
            self._ended(env)
        step = _begin_handed(env, None)  # the rest waited: the step reads the clock
        if step is not None:
            await step

    def _crashed(self, env: Envelope[M], exc: Exception) -> None:
        self._mailbox.poisoned(env, self._ctx.name, exc)  # as ``ctx.handling`` would
        self._crash = exc
        assert self._scope is not None
        self._scope.cancel()  # wakes the actor's task, which raises it

    def _cancelled(self, env: Envelope[M]) -> None:
        self._mailbox.answered(env)  # cancelled: nobody waits for it any more
        reply = env.reply
        if reply is not None and (step := reply.step) is not None:
            reply.step = None
            door, handed = step
            door.drop_step(handed)  # its actor's workers take it as if it was sent

    def _ended(self, env: Envelope[M]) -> None:
        """The handler is over: the door is open again (the step it handed on runs after)."""
        self._running = False
        reply = env.reply
        if reply is not None:
            reply.asker_steps = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    async def serve(self) -> NoReturn:
        """The actor's mailbox loop with the door open whenever it waits for mail."""
        mailbox = self._ctx.mailbox
        handle = self._handle
        mailbox.direct = self
        try:
            with trio.CancelScope() as self._scope:
                while True:
                    # Open only with nothing queued: a message already here goes first.
                    self._idle = not mailbox.depth
                    try:
                        env = await mailbox.receive()
                    finally:
                        self._idle = False
                    if self._running:
                        await self._run_ended()
                    if self._crash is not None:
                        break  # taken meanwhile, still in flight: redelivered after the restart
                    with self._ctx.handling(env):
                        await handle(env)
            assert self._crash is not None, "only a caller's crash ends this loop"
            raise self._crash
        finally:
            if mailbox.direct is self:
                mailbox.direct = None

    async def _run_ended(self) -> None:
        self._waiter = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


def _begin_handed(env: Envelope[Any], now: float | None) -> Awaitable[None] | None:
    """Begin the step ``env``'s handler handed on (``hand_on``), if it did: ``None`` once
    it is over (or there was none), else its rest. ``now``: the time still, if nothing
    waited since the asker read it (``None``: the step reads the clock)."""
    reply = env.reply
    if reply is None or (step := reply.step) is None:
        return None
    # Unpacked from its own name: ``(door, handed), reply.step = reply.step, None``
    # went through a generic tuple and iterator (~1.5k instructions compiled).
    reply.step = None
    door, handed = step
    # A ``StepEntry`` (``hand_on`` takes no other): called as such, not by name.
    return cast(StepEntry[Any], door).begin_step(handed, now)  # this actor's door is open again


def hand_on(ctx: ActorContext[M], env: Envelope[M], target: Mailbox[N], msg: N) -> bool:
    """Hand ``env``'s request on to ``target`` as ``msg``, for the asker's own task to run
    ``target``'s step for it once this handler has returned; ``False`` (nothing done):
    forward it instead.

    Only when the asker's task runs this handler (entered directly) and ``target``'s
    incarnation takes it now (its ``StepEntry``). The handler's last act: the request
    is ``target``'s from here (in flight there), this actor is done with ``env``.
    """
    reply = env.reply
    door = target.step_door
    # A ``StepEntry`` (the one kind of door) is called as such, not through the protocol.
    if (
        reply is None
        or not reply.asker_steps
        or not isinstance(door, StepEntry)
        or not door.can_take(msg)
    ):
        return False
    ctx.mailbox.answered(env)
    handed = target.envelope(msg, reply, 0.0, env.deadline)
    door.take(handed)
    reply.step = (door, handed)
    return True


class StepEntry(Generic[M]):
    """An actor incarnation's door for requests its askers' tasks run (``hand_on``).

    A step taken counts as one of the incarnation's own workers (``admit``
    says whether one is free now, ``enter`` and ``leave`` count it) and is
    taken only with nothing queued in any lane: what waits goes first. While it
    runs the request is in flight in the mailbox, as one a worker took, and:

    - a step that raises crashes the actor, not the asker: the request is
      answered with ``ActorCrashed`` and ``guard`` raises the error in the
      incarnation, whose supervisor restarts it;
    - the incarnation ending (``guard`` cancelled: a reconnect, a stop)
      cancels the steps running, and ``wait_left`` waits until they are
      unwound, so the supervisor puts their requests back for the next
      incarnation (the asker still waits for the answer);
    - the asker's deadline bounds the step: it is cancelled then and the
      asker gets ``CallTimeout``, leaving its work where a crash would leave it;
    - the asker's own cancellation does not cut it short (shielded).

    The last three need a shielded cancel scope with the asker's deadline, which
    costs more than many steps' own work; a step that never waits needs none
    (nothing can cancel it, and it ends at once). So with ``begin`` the step is
    begun by a plain call, which runs it as far as nothing in it waits and
    returns ``None`` when it is over, or the rest of it (to await, in the scope).
    A step due past its deadline is not begun: ``handle`` runs it, in the scope.
    """

    __slots__ = (
        "_admit", "_all_left", "_begin", "_clock", "_crash", "_crashed", "_ctx", "_enter",
        "_handle", "_leave", "_mailbox", "_scopes", "_shut",
    )  # fmt: skip

    def __init__(
        self,
        ctx: ActorContext[M],
        handle: Callable[[Envelope[M]], Awaitable[None]],
        *,
        admit: Callable[[M], bool],
        enter: Callable[[], None],
        leave: Callable[[], None],
        begin: Callable[[Envelope[M]], Awaitable[None] | None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._mailbox = ctx.mailbox
        self._handle = handle
        self._begin = begin
        #: The run's clock (made inside it): a step's deadline is checked against it
        #: without ``trio.current_time``'s two frames of interpreted Python.
        self._clock = trio.lowlevel.current_clock()
        self._admit = admit
        self._enter = enter
        self._leave = leave
        #: The steps taken, each with its scope (the asker's deadline, the incarnation's
        #: end) once its rest runs in one.
        self._scopes: dict[Envelope[M], trio.CancelScope | None] = {}
        self._shut = False
        self._crash: Exception | None = None
        self._crashed = trio.Event()
        self._all_left: trio.Event | None = None

    def can_take(self, msg: M) -> bool:
        """Whether a step for ``msg`` may start now: nothing queued, a worker free."""
        return not self._shut and not self._mailbox.depth and self._admit(msg)

    def take(self, env: Envelope[M]) -> None:
        """Count ``env`` taken (in flight) by a worker slot; only after ``can_take``."""
        self._mailbox.take(env)
        self._scopes[env] = None
        self._enter()

    def begin_step(self, env: Envelope[M], now: float | None = None) -> Awaitable[None] | None:
        """Run the step for ``env`` in this task (see the class for what it keeps) as far
        as nothing in it waits: ``None`` once it is over, else the rest, which the asker
        awaits at once (in the step's scope). ``now``: the time, when the asker read it
        with nothing waiting since (``DirectEntry.begin``); ``None``: read the clock."""
        begin = self._begin
        # Without ``begin``, or past its deadline (``env.expired()``, on the run's clock
        # read directly unless the asker's reading is still the time): all of it runs
        # in the scope.
        if begin is None:
            return self._run_rest(env, self._handle(env))
        if now is None:
            now = self._clock.current_time()
        if now > env.deadline:
            return self._run_rest(env, self._handle(env))
        try:
            rest = begin(env)
        except Exception as exc:
            self._crashed_by(env, exc)
        except BaseException:
            self._left(env)
            raise
        else:
            if rest is not None:
                return self._run_rest(env, rest)
        self._left(env)
        return None

    async def _run_rest(self, env: Envelope[M], rest: Awaitable[None]) -> None:
        """What ``begin_step`` left of a step, in its scope (the asker's deadline, the
        incarnation's end, shielded from the asker's own cancellation)."""
        scope = self._scopes[env] = trio.CancelScope(deadline=env.deadline, shield=True)
        try:
            with scope:
                await rest
        except Exception as exc:
            self._crashed_by(env, exc)
        finally:
            self._left(env)
        if scope.cancelled_caught and not self._shut:
            # Past the asker's deadline: it stops waiting, as a call's timeout says.
            self._mailbox.answered(env)
            assert env.reply is not None
            env.reply.fail(CallTimeout("no answer before the deadline"))

    def _crashed_by(self, env: Envelope[M], exc: Exception) -> None:
        """``env``'s step raised: it is answered with the crash, which ``guard`` raises."""
        self._mailbox.poisoned(env, self._ctx.name, exc)  # as ``ctx.handling``
        if self._crash is None:
            self._crash = exc
            self._crashed.set()

    def drop_step(self, env: Envelope[M]) -> None:
        """A step taken and not run: back to the mailbox, for the workers."""
        self._left(env)
        self._mailbox.put_back(env)

    def _left(self, env: Envelope[M]) -> None:
        del self._scopes[env]
        self._leave()
        if not self._scopes and self._all_left is not None:
            self._all_left.set()

    async def guard(self) -> NoReturn:
        """Run in the incarnation's nursery: raises a step's crash there; cancelled
        (the incarnation ending), it shuts the door and cancels the steps running."""
        self._mailbox.step_door = self
        try:
            await self._crashed.wait()
        finally:
            self._shut = True
            if self._mailbox.step_door is self:
                self._mailbox.step_door = None
            for scope in self._scopes.values():
                if scope is not None:  # none: taken, not begun yet (no wait between)
                    scope.cancel()
        assert self._crash is not None
        raise self._crash

    async def wait_left(self) -> None:
        """Wait until no step runs (after ``guard`` ended): their requests are in flight."""
        if self._scopes:
            self._all_left = trio.Event()
            await self._all_left.wait()
