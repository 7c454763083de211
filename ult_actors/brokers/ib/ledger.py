"""What the connections of one IB account have delivered, kept across reconnects.

A connector lives for one connection; when its socket drops (or goes silent)
the next incarnation must deliver what happened in between, and only that.
``connector_factory`` gives every incarnation of one configured connection
the same ``ExecutionLedger``: the execution ids already delivered to the
service (or accounted for as history at the first connect), and whether an
incarnation connected before. A new incarnation announces every execution
of the day that is not in it before its stream reports started (see
``IbConnector.stream_updates``); a 1101 within a connection asks for
executions since the loss. An execution is added once the service has it
(the sink returned), so one whose delivery crashed is announced again.
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
    #: An earlier incarnation took stock: what it did not deliver is news, not history.
    connected_before: bool = False

    def __contains__(self, exec_id: object) -> bool:
        return exec_id in self.delivered
