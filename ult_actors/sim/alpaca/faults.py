"""The Alpaca simulator's fault kinds (the shared vocabulary is ``ult_actors/sim/faults.py``).

How the Alpaca simulator answers them:

- ``status``: a JSON body for 500/503, an HTML proxy page for 502/504.
- ``rate_limit``: 429 with ``X-RateLimit-Limit/Remaining/Reset`` (reset =
  now + ``retry_after_s``), and ``Retry-After`` when ``retry_after_header``.
- ``stream_drop`` counts trade updates sent on ``trade_updates``; the cut
  closes without a close frame.
- ``stream_mute``: no events and no pongs.

Request faults with no ``path`` match any ``/v2`` path.
"""

from __future__ import annotations

from ult_actors.sim.faults import FaultBoard, FaultSpec, SharedKind

__all__ = ["API_PREFIX", "Fault", "FaultBoard", "FaultKind"]

#: Alpaca's kinds are the shared ones.
FaultKind = SharedKind
#: Where a request fault with no ``path`` applies.
API_PREFIX = "/v2"


class Fault(FaultSpec, kw_only=True, forbid_unknown_fields=True):
    """One Alpaca simulator fault: the shared fields, Alpaca's kinds."""

    kind: FaultKind
