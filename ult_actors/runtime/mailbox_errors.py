"""The errors a mailbox and a call raise (``ult_actors.runtime.mailbox`` re-exports them).

Kept out of ``mailbox.py`` so that module can be compiled by mypyc: a compiled class
cannot subclass ``TimeoutError`` or ``RuntimeError``, and these must stay those.
"""

from __future__ import annotations


class MailboxFull(Exception):
    """``send_nowait`` found the mailbox at capacity."""


class CallTimeout(TimeoutError):
    """A request was not answered before its deadline."""


class ActorUnavailable(CallTimeout):
    """The actor is parked after repeated failures: refused now rather than at the deadline."""


class InFlightUnanswered(ActorUnavailable):
    """The actor went down while handling this request and is not back: what the
    request did (an order sent) is unknown, unlike a request it never took."""


class ActorCrashed(RuntimeError):
    """The actor crashed handling this request (not redelivered), or crashed with it in
    flight more often than redelivery allows."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        #: What crashed the actor last, so the asker can tell a bug from an outage
        #: (a dropped connection restarts an actor as a crash does).
        self.cause = cause
