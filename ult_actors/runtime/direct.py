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

What differs is whose cancel scopes the handler runs under: a caller cancelled
at one of the handler's checkpoints leaves the request there, unanswered (its
asker is gone), as a crash would have left it; handlers already cope with that,
since a crash redelivers. And a handler that has to wait (a full mailbox
further on) holds its caller until it is done; the call's timeout runs from
then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar

import trio

from ult_actors.runtime.mailbox import Envelope

if TYPE_CHECKING:
    from ult_actors.runtime.actor import ActorContext

M = TypeVar("M")


class DirectEntry(Generic[M]):
    """The door of one actor incarnation's mailbox loop (``serve_mailbox(direct=True)``)."""

    __slots__ = ("_crash", "_ctx", "_handle", "_idle", "_mailbox", "_running", "_scope", "_waiter")

    def __init__(
        self, ctx: ActorContext[M], handle: Callable[[Envelope[M]], Awaitable[None]]
    ) -> None:
        self._ctx = ctx
        self._mailbox = ctx.mailbox  # read per call: not through the property
        self._handle = handle
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

    async def run(self, env: Envelope[M]) -> None:
        """Run the actor's handler for ``env`` in this task; only after ``can_enter``.

        A handler that raises has crashed the actor: ``env`` is answered with
        ``ActorCrashed`` and the error goes to the actor's task; this returns.
        """
        mailbox = self._mailbox
        self._running = True
        mailbox.take(env)
        try:
            with self._ctx.handling(env):  # answers env with the crash
                await self._handle(env)
        except Exception as exc:
            self._crash = exc
            assert self._scope is not None
            self._scope.cancel()  # wakes the actor's task, which raises it
        except BaseException:
            mailbox.answered(env)  # cancelled: nobody waits for it any more
            raise
        finally:
            self._running = False
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
