"""What an actor body sees: its context, and the standard mailbox loop.

An actor is an async function ``start(ctx)`` run as a trio task by its
supervisor. It owns its state (locals or an object it builds), reads
``ctx.mailbox``, calls ``ctx.started()`` once it is ready to serve, and
answers requests with ``ctx.reply`` / ``ctx.fail``, or hands them on to
another actor with ``ctx.forward``. Raising is crashing: the
supervisor decides what happens next. A handler run inside ``ctx.handling(env)``
(``serve_mailbox`` does so) that raises has its request answered with the
crash, never redelivered: one poison message crashes its actor once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeVar

import structlog

from ult_actors.runtime.direct import DirectEntry
from ult_actors.runtime.mailbox import Envelope, Mailbox

M = TypeVar("M")
N = TypeVar("N")


class ActorContext(Generic[M]):
    """Handed to each incarnation of an actor by its supervisor."""

    def __init__(
        self,
        name: str,
        mailbox: Mailbox[M] | None,
        *,
        incarnation: int,
        on_started: Callable[[], None],
        on_failed: Callable[[BaseException], None],
    ) -> None:
        self.name = name
        self._mailbox = mailbox
        #: 1 for the first start, +1 on every restart.
        self.incarnation = incarnation
        self.log: Any = structlog.get_logger().bind(actor=name)
        self._on_started = on_started
        self._on_failed = on_failed

    @property
    def mailbox(self) -> Mailbox[M]:
        if self._mailbox is None:
            raise RuntimeError(f"actor {self.name} was given no mailbox")
        return self._mailbox

    def started(self) -> None:
        """Report that this incarnation is up; the supervisor starts the next sibling."""
        self._on_started()

    def mark_failed(self, error: BaseException) -> None:
        """Report a fatal condition without crashing (no restart loop).

        For errors a restart cannot fix, such as refused credentials: the
        actor stays alive to answer its mailbox with the error, and health
        shows it ``failed`` with ``error`` until the configuration changes.
        """
        self._on_failed(error)

    # ``reply``, ``fail``, ``forward`` and ``handling`` run per order: they read
    # ``_mailbox`` without the property (the request came from it, so it is there).

    def reply(self, env: Envelope[M], value: Any) -> None:
        """Answer a request."""
        if env.reply is not None:
            env.reply.set(value)
            assert self._mailbox is not None
            self._mailbox.answered(env)

    def fail(self, env: Envelope[M], error: BaseException) -> None:
        """Answer a request with an error the asker will raise."""
        if env.reply is not None:
            env.reply.fail(error)
            assert self._mailbox is not None
            self._mailbox.answered(env)

    async def forward(self, env: Envelope[M], target: Mailbox[N], msg: N) -> None:
        """Hand ``env``'s request on to ``target`` as ``msg``, with the asker's reply slot.

        Whoever serves ``target`` answers the asker directly, within what is
        left of ``env``'s deadline; this actor is done with ``env`` (it is no
        longer in flight here, so a crash of this actor does not redeliver it).
        """
        assert self._mailbox is not None
        self._mailbox.answered(env)
        await target.send(msg, reply=env.reply, deadline=env.deadline)

    def handling(self, env: Envelope[M]) -> AbstractContextManager[None]:
        """Run the handler of ``env`` inside: if it raises, ``env`` is what crashed the
        actor, so it is answered with ``ActorCrashed`` and not redelivered (the
        exception still propagates: the actor crashes as before)."""
        assert self._mailbox is not None
        return _Handling(self._mailbox, self.name, env)


class _Handling(AbstractContextManager[None]):
    """``ActorContext.handling``: a plain class, as it is entered once per message."""

    __slots__ = ("actor", "env", "mailbox")

    def __init__(self, mailbox: Mailbox[Any], actor: str, env: Envelope[Any]) -> None:
        self.mailbox = mailbox
        self.actor = actor
        self.env = env

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, Exception):
            self.mailbox.poisoned(self.env, self.actor, error)


async def serve_mailbox(
    ctx: ActorContext[M],
    handle: Callable[[Envelope[M]], Awaitable[None]],
    *,
    direct: bool = False,
    begin: Callable[[Envelope[M], float], Awaitable[None] | None] | None = None,
) -> NoReturn:
    """Report started, then hand every message to ``handle``, one at a time, forever.

    ``direct``: while this actor waits for mail, a ``call`` runs ``handle`` for its
    request in the caller's own task instead (``direct.DirectEntry``: same order,
    same crash, no wake-up of this task); with ``begin`` (what ``handle`` does, by a
    plain call as far as nothing in it waits: ``None`` once over, else the rest to
    await; called with the request and the time its caller read as it sent it), the
    caller's task runs that, so a request that waits for nothing costs it no coroutine.
    """
    mailbox = ctx.mailbox
    ctx.started()
    if direct:
        await DirectEntry(ctx, handle, begin).serve()
    while True:
        env = await mailbox.receive()
        with ctx.handling(env):
            await handle(env)
