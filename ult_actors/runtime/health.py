"""Health records of actors and supervisors, and the snapshot types they produce.

The runtime keeps one mutable ``HealthRecord`` per child, updated as things
happen; ``ActorHealth`` is its immutable wire form (also used by IPC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

#: ``connecting``: it failed before it came up (a connection that cannot connect)
#: and waits for its next try.
ActorState = Literal["starting", "running", "restarting", "connecting", "failed", "stopped"]
RestartType = Literal["permanent", "transient", "temporary"]


class LastError(msgspec.Struct, frozen=True, kw_only=True):
    """The most recent failure of an actor (message already redacted)."""

    type: str
    message: str
    at: int


class ActorHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One actor's or supervisor's health, flat; ``parent`` rebuilds the tree."""

    name: str
    parent: str | None
    kind: Literal["actor", "supervisor"]
    state: ActorState
    restart: RestartType
    restarts: int
    started_at: int | None
    last_error: LastError | None
    mailbox_depth: int
    handled: int
    strategy: str | None = None
    restarts_in_window: int = 0
    #: While ``connecting``: failed tries in a row, and when (ns) the next one starts.
    connect_failures: int = 0
    next_retry_at: int | None = None


#: Called with a fresh snapshot of one actor whenever its state changes.
HealthListener = Callable[[ActorHealth], None]


class HealthRecord:
    """Mutable health of one child, owned by its supervisor."""

    __slots__ = (
        "connect_failures", "last_error", "next_retry_at", "restarts", "started_at", "state"
    )

    def __init__(self) -> None:
        self.state: ActorState = "stopped"
        self.restarts = 0
        self.started_at: int | None = None
        self.last_error: LastError | None = None
        self.connect_failures = 0
        self.next_retry_at: int | None = None

    def record_error(self, exc: BaseException, now_ns: int) -> None:
        self.last_error = LastError(type=type(exc).__name__, message=str(exc)[:500], at=now_ns)
