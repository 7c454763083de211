"""The OANDA simulator's fault kinds (the shared vocabulary is ``ult_actors/sim/faults.py``).

The vocabulary is the Alpaca simulator's, so one chaos script drives both.
How the OANDA simulator answers them, and what it adds:

- ``status``: a v20 error body (``errorMessage``).
- ``rate_limit``: 429, with ``Retry-After: retry_after_s`` (rounded up) when
  ``retry_after_header``.
- ``stream_drop`` counts transactions streamed.
- ``stream_mute``: neither transactions nor heartbeats; new streams are unaffected.
- ``heartbeat_stop`` (OANDA only): current streams stop sending heartbeats;
  transactions still flow. Takes effect when armed.

Request faults with no ``path`` match any ``/v3`` path; they never apply to
the stream endpoints, which have the ``stream_*`` kinds.
"""

from __future__ import annotations

from typing import Literal

from ult_actors.sim.faults import FaultBoard, FaultSpec, SharedKind

__all__ = ["API_PREFIX", "ON_ARM_KINDS", "Fault", "FaultBoard", "FaultKind"]

FaultKind = Literal[SharedKind, "heartbeat_stop"]
#: Kinds that act on the streams open when they are armed, and are used up by it.
ON_ARM_KINDS = frozenset({"stream_mute", "heartbeat_stop"})
#: Where a request fault with no ``path`` applies.
API_PREFIX = "/v3"


class Fault(FaultSpec, kw_only=True, forbid_unknown_fields=True):
    """One OANDA simulator fault: the shared fields, OANDA's kinds (``heartbeat_stop`` added)."""

    kind: FaultKind
