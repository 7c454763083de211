"""The OANDA simulator's fault kinds (the shared vocabulary is ``ult_actors/sim/faults.py``).

The vocabulary is the Alpaca simulator's, so one chaos script drives both.
How the OANDA simulator answers them, and what it adds:

- ``status``: a v20 error body (``errorMessage``).
- ``rate_limit``: 429, with ``Retry-After: retry_after_s`` (rounded up) when
  ``retry_after_header``.
- ``stream_drop`` counts transactions streamed.
- ``stream_mute``, and ``silent`` (issue 18's name for it): current streams
  stay open and send neither transactions nor heartbeats; new streams are
  unaffected. Takes effect when armed.
- ``heartbeat_stop`` (OANDA only): current streams stop sending heartbeats;
  transactions still flow. Takes effect when armed.
- ``drop_events``: transactions never streamed, while the REST record
  (``/transactions/sinceid``, orders, trades) stays right and heartbeats
  still name the newest id. Each transaction of one of ``events`` (its
  ``type``, e.g. ``ORDER_FILL``; all when empty) is dropped with
  ``probability``, drawn from the simulator's seeded generator, until
  ``count`` have been dropped. The first armed ``drop_events`` fault decides.

Request faults with no ``path`` match any ``/v3`` path; they never apply to
the stream endpoints, which have the ``stream_*`` kinds.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ult_actors.sim.faults import FaultBoard, FaultSpec, SharedKind

__all__ = ["API_PREFIX", "ON_ARM_KINDS", "Fault", "FaultBoard", "FaultKind"]

FaultKind = Literal[SharedKind, "heartbeat_stop", "silent", "drop_events"]
#: Kinds that act on the streams open when they are armed, and are used up by it.
ON_ARM_KINDS = frozenset({"stream_mute", "silent", "heartbeat_stop"})
#: Where a request fault with no ``path`` applies.
API_PREFIX = "/v3"


class Fault(FaultSpec, kw_only=True, forbid_unknown_fields=True):
    """One OANDA simulator fault: the shared fields and kinds, plus OANDA's own."""

    kind: FaultKind
    #: ``drop_events``: the chance that a matching transaction is not streamed.
    probability: float = 1.0
    #: ``drop_events``: the transaction types it drops (``ORDER_FILL``, ...); empty: all.
    events: list[str] = msgspec.field(default_factory=list)
