"""What the connections of one IB account have delivered, kept across reconnects.

A connector lives for one connection; when its socket drops (or goes silent)
the next incarnation must deliver what happened in between, and only that.
``connector_factory`` gives every incarnation of one configured connection
the same ``ExecutionLedger``: the execution ids already delivered to the
service (or accounted for as history at the first connect), and when TWS was
last heard from. A new incarnation announces every execution of the day that
is not in it (see ``IbConnector.resync``); a 1101 within a connection asks
for executions since the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ult_actors.recent import Recent

#: Execution ids remembered: far more than an account executes between reconnects.
_REMEMBERED = 100_000


@dataclass
class ExecutionLedger:
    """Shared by the incarnations of one IB connection; see the module docstring."""

    #: Execution ids whose fills reached the service (or were history at the first connect).
    delivered: Recent[str, None] = field(default_factory=lambda: Recent(_REMEMBERED))
    #: Wall-clock time (ns) TWS last said anything on any incarnation; None before the first.
    last_heard_ns: int | None = None

    @property
    def connected_before(self) -> bool:
        """Whether an earlier incarnation heard from TWS (a reconnect, not the first start)."""
        return self.last_heard_ns is not None

    def __contains__(self, exec_id: object) -> bool:
        return exec_id in self.delivered
