"""The actor runtime: supervised actors, their mailboxes, events and health.

It knows nothing of trading. Actors import what they need from here::

    from ult_actors.runtime import ActorContext, Envelope, Mailbox, call

An actor body is ``start(ctx: ActorContext[M])``; it serves ``ctx.mailbox``
(``serve_mailbox``), answers with ``ctx.reply`` / ``ctx.fail`` or hands a
request on with ``ctx.forward``. A ``Supervisor`` runs actors from
``ChildSpec`` records and restarts them; an ``EventBus`` fans events out to
``Subscription`` readers; ``ActorHealth`` is what the supervisor reports.

The names load on first use: ``ult_actors.messages`` imports the health
records from here, and a client that only speaks the wire schema must not
import trio or structlog for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ult_actors.runtime.actor import ActorContext, serve_mailbox
    from ult_actors.runtime.health import ActorHealth, ActorState, HealthListener, LastError
    from ult_actors.runtime.mailbox import (
        ActorCrashed,
        ActorUnavailable,
        CallTimeout,
        Envelope,
        Mailbox,
        MailboxFull,
        ReplySlot,
        call,
    )
    from ult_actors.runtime.pubsub import EventBus, Subscription
    from ult_actors.runtime.supervisor import Backoff, ChildSpec, Supervisor, SupervisorGaveUp

#: Each public name and the module that defines it.
_HOMES = {
    "ActorContext": "actor",
    "serve_mailbox": "actor",
    "ActorHealth": "health",
    "ActorState": "health",
    "HealthListener": "health",
    "LastError": "health",
    "ActorCrashed": "mailbox",
    "ActorUnavailable": "mailbox",
    "CallTimeout": "mailbox",
    "Envelope": "mailbox",
    "Mailbox": "mailbox",
    "MailboxFull": "mailbox",
    "ReplySlot": "mailbox",
    "call": "mailbox",
    "EventBus": "pubsub",
    "Subscription": "pubsub",
    "Backoff": "supervisor",
    "ChildSpec": "supervisor",
    "Supervisor": "supervisor",
    "SupervisorGaveUp": "supervisor",
}

__all__ = [
    "ActorContext",
    "ActorCrashed",
    "ActorHealth",
    "ActorState",
    "ActorUnavailable",
    "Backoff",
    "CallTimeout",
    "ChildSpec",
    "Envelope",
    "EventBus",
    "HealthListener",
    "LastError",
    "Mailbox",
    "MailboxFull",
    "ReplySlot",
    "Subscription",
    "Supervisor",
    "SupervisorGaveUp",
    "call",
    "serve_mailbox",
]


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once loaded, a plain module attribute
    return value
