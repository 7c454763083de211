"""The Alpaca simulator's fault kinds (the shared vocabulary is ``ult_actors/sim/faults.py``).

How the Alpaca simulator answers them:

- ``status``: a JSON body for 500/503, an HTML proxy page for 502/504.
- ``rate_limit``: 429 with ``X-RateLimit-Limit/Remaining/Reset`` (reset =
  now + ``retry_after_s``), and ``Retry-After`` when ``retry_after_header``.
- ``stream_drop`` counts trade updates sent on ``trade_updates``; the cut
  closes without a close frame.
- ``stream_mute``, and ``silent`` (issue 18's name for it): every current
  ``trade_updates`` connection stays open and sends nothing -- no updates, no
  pongs. New connections are unaffected. Takes effect when armed.

Alpaca's own kind:

- ``drop_events``: trade updates that are never sent, while the REST record
  (orders, FILL activities) stays right. Each update of one of ``events``
  (all when empty) is dropped with ``probability``, drawn from the
  simulator's seeded generator, until ``count`` have been dropped. The
  first armed ``drop_events`` fault decides.

Request faults with no ``path`` match any ``/v2`` path.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ult_actors.sim.faults import FaultBoard, FaultSpec, SharedKind

__all__ = ["API_PREFIX", "Fault", "FaultBoard", "FaultKind"]

FaultKind = Literal[SharedKind, "silent", "drop_events"]
#: Kinds that silence the streams open when armed (and are used up by it).
SILENCING = frozenset({"stream_mute", "silent"})
#: Where a request fault with no ``path`` applies.
API_PREFIX = "/v2"


class Fault(FaultSpec, kw_only=True, forbid_unknown_fields=True):
    """One Alpaca simulator fault: the shared fields and kinds, plus ``drop_events``'s."""

    kind: FaultKind
    #: ``drop_events``: the chance that a matching update is dropped.
    probability: float = 1.0
    #: ``drop_events``: the trade update events it drops (``fill``, ``new``, ...); empty: all.
    events: list[str] = msgspec.field(default_factory=list)
