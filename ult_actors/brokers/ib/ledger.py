"""What the connections of one IB account have heard and delivered, kept across reconnects.

A connector lives for one connection; when its socket drops (or goes silent)
the next incarnation must deliver what happened in between, and only that.
``connector_factory`` gives every incarnation of one configured connection
the same ``ExecutionLedger``:

- ``delivered``: the execution ids whose fills reached the service (or were
  accounted for as history at the first connect). An id is added once the
  service has the fill (the sink returned), so one whose delivery crashed is
  announced again by the next incarnation;
- ``heard``: the executions any incarnation heard, so the next one rebuilds
  its book (fills split across a modify, quantities executed) from them and
  asks TWS only for the executions since the gap (``gap_began_ns``);
- ``last_heard_ns``: when TWS last said anything to an incarnation that was
  in step (our wall clock; not while one takes stock at connect, nor while
  TWS has lost IB): where a gap begins. An execution from before it that no
  one heard (TWS never pushed it) shows as an order status ahead of its
  executions, and the day's are asked for then.

A new incarnation announces every execution that is not ``delivered``
before its stream reports started (see ``IbConnector.stream_updates``); a
1101 within a connection asks for executions since the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ult_actors.brokers.ib import wire
from ult_actors.recent import Recent

#: Execution ids remembered: far more than an account executes between reconnects.
_REMEMBERED = 100_000
#: Executions kept whole to rebuild a book from (about 1 KB each: 5 MB at most); past
#: that, a reconnect asks TWS for the day's again.
_HEARD = 5_000


@dataclass
class ExecutionLedger:
    """Shared by the incarnations of one IB connection; see the module docstring."""

    #: Execution ids whose fills reached the service (or were history at the first connect).
    delivered: Recent[str, None] = field(default_factory=lambda: Recent(_REMEMBERED))
    #: An earlier incarnation took stock: what it did not deliver is news, not history.
    connected_before: bool = False
    #: Our wall clock (ns) when TWS last sent a message to an incarnation in step.
    last_heard_ns: int | None = None
    #: Some execution heard was forgotten (past the bound): the book needs the day's again.
    forgot: bool = False
    heard: Recent[str, wire.ExecDetails] = field(init=False)

    def __post_init__(self) -> None:
        self.heard = Recent(_HEARD, on_evict=self._forgot)

    def __contains__(self, exec_id: object) -> bool:
        return exec_id in self.delivered

    def hear(self, execution: wire.ExecDetails) -> None:
        """Remember an execution TWS told an incarnation about."""
        if execution.exec_id not in self.heard:
            self.heard.put(execution.exec_id, execution)

    def gap_began_ns(self) -> int | None:
        """Since when TWS must be asked for executions; ``None``: the whole day's.

        Asked before the new connection hears anything (its own messages move
        ``last_heard_ns``). ``None`` at the first connect and once an execution
        heard was forgotten: the book could not be rebuilt from memory.
        """
        if not self.connected_before or self.forgot:
            return None
        return self.last_heard_ns

    def _forgot(self, _exec_id: str, _execution: wire.ExecDetails) -> None:
        self.forgot = True
