"""Fault switches of the Alpaca simulator: what to break, for how many requests.

A ``Fault`` is data, so the same spec arms a fault from a test
(``sim.faults.arm(Fault(...))``), from the command line (``--fault JSON``)
or from another process (``POST /_sim/faults`` with the JSON body). Faults
apply in the order armed; each matching request uses up one ``count``.

Kinds:

- ``drop``: close the connection before reading the request's meaning (nothing applied).
- ``status``: answer ``status`` (5xx: JSON body for 500/503, an HTML proxy page for 502/504).
- ``rate_limit``: answer 429 with ``X-RateLimit-Limit/Remaining/Reset`` (reset =
  now + ``retry_after_s``), and ``Retry-After`` when ``retry_after_header``.
- ``slow``: wait ``delay_s`` seconds, then handle the request normally.
- ``lose_reply``: apply the request, then close the connection without a reply.
- ``stream_drop``: cut every ``trade_updates`` connection (no close frame) once
  ``after_events`` more trade updates have been sent; 0 cuts at once.
- ``stream_refuse``: refuse the next ``count`` stream connections (HTTP 503).
- ``stream_mute``: every current stream connection stays open but goes silent:
  no events, no pongs (a half-open connection). Takes effect when armed.
"""

from __future__ import annotations

from typing import Literal

import msgspec

FaultKind = Literal[
    "drop",
    "status",
    "rate_limit",
    "slow",
    "lose_reply",
    "stream_drop",
    "stream_refuse",
    "stream_mute",
]
_REQUEST_KINDS = frozenset({"drop", "status", "rate_limit", "slow", "lose_reply"})


class Fault(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One armed fault (see the module docstring for the kinds)."""

    kind: FaultKind
    #: How many requests (or stream cuts / refusals) it affects.
    count: int = 1
    #: Only requests with this method, e.g. ``POST`` ("" matches any).
    method: str = ""
    #: Only paths starting with this, e.g. ``/v2/orders`` ("" matches any ``/v2`` path).
    path: str = ""
    status: int = 503
    delay_s: float = 2.0
    retry_after_s: float = 1.0
    retry_after_header: bool = False
    after_events: int = 0


class FaultBoard:
    """The armed faults; the simulator consults it for every request and stream event."""

    def __init__(self) -> None:
        self._armed: list[Fault] = []
        #: Faults used up so far, by kind (tests and the chaos script read this).
        self.fired: dict[str, int] = {}
        # Trade updates sent since each stream_drop fault was armed or last fired.
        self._events_seen: dict[int, int] = {}

    def arm(self, fault: Fault) -> None:
        """Add a fault; ``ValueError`` for a spec that cannot work."""
        if fault.count < 1:
            raise ValueError("count must be at least 1")
        if fault.kind == "status" and not 400 <= fault.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if fault.delay_s < 0 or fault.retry_after_s < 0 or fault.after_events < 0:
            raise ValueError("delay_s, retry_after_s and after_events must not be negative")
        self._armed.append(msgspec.structs.replace(fault, method=fault.method.upper()))

    def clear(self) -> None:
        """Disarm everything."""
        self._armed.clear()
        self._events_seen.clear()

    def armed(self) -> list[Fault]:
        """What is still armed, in order."""
        return list(self._armed)

    def take_request_fault(self, method: str, path: str) -> Fault | None:
        """The first request fault matching, with one use taken off it."""
        for fault in self._armed:
            if fault.kind not in _REQUEST_KINDS:
                continue
            if fault.method and fault.method != method:
                continue
            if not path.startswith(fault.path or "/v2"):
                continue
            self._use(fault)
            return fault
        return None

    def take_stream_refusal(self) -> bool:
        """Whether to refuse this stream connection."""
        for fault in self._armed:
            if fault.kind == "stream_refuse":
                self._use(fault)
                return True
        return False

    def stream_cut_due(self) -> bool:
        """Called after each trade update sent: whether to cut the streams now."""
        for fault in self._armed:
            if fault.kind != "stream_drop":
                continue
            seen = self._events_seen.get(id(fault), 0) + 1
            if seen < fault.after_events:
                self._events_seen[id(fault)] = seen
                return False
            self._events_seen.pop(id(fault), None)
            self._use(fault)
            return True
        return False

    def take(self, kind: FaultKind) -> bool:
        """Use up one armed fault of ``kind`` (those that act when armed)."""
        for fault in self._armed:
            if fault.kind == kind:
                self._use(fault)
                return True
        return False

    def cut_now(self) -> bool:
        """Whether a ``stream_drop`` with ``after_events=0`` is armed (used up if so)."""
        for fault in self._armed:
            if fault.kind == "stream_drop" and fault.after_events == 0:
                self._use(fault)
                return True
        return False

    def _use(self, fault: Fault) -> None:
        self.fired[fault.kind] = self.fired.get(fault.kind, 0) + 1
        fault.count -= 1
        if fault.count <= 0:
            self._armed.remove(fault)
