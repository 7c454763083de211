"""Fault switches of the OANDA simulator: what to break, for how many requests.

The vocabulary is the Alpaca simulator's (``ult_actors/sim/alpaca_faults.py``),
so one chaos script drives both: a ``Fault`` is data, armed from a test
(``sim.arm(Fault(...))``), from the command line (``--fault JSON``) or from
another process (``POST /_sim/faults`` with a fault or a list of faults).
Faults apply in the order armed; each matching request uses up one ``count``.

Kinds:

- ``drop``: close the connection without a reply (nothing applied).
- ``status``: answer ``status`` with a v20 error body (nothing applied).
- ``rate_limit``: answer 429, with ``Retry-After: retry_after_s`` when
  ``retry_after_header``.
- ``slow``: wait ``delay_s`` seconds, then handle the request normally.
- ``lose_reply``: apply the request, then close the connection without a reply.
- ``stream_drop``: cut every stream connection once ``after_events`` more
  transactions have been sent; 0 cuts at once.
- ``stream_refuse``: refuse the next ``count`` stream connections (503).
- ``stream_mute``: every current stream stays open but sends nothing more,
  neither transactions nor heartbeats (a half-open connection). New streams
  are unaffected. Takes effect when armed.
- ``heartbeat_stop`` (OANDA only): current streams stop sending heartbeats;
  transactions still flow. Takes effect when armed.

Request faults match ``method`` ("" any) and a path prefix ``path`` ("" any
``/v3`` path); they never apply to the stream endpoints, which have the
``stream_*`` kinds.
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
    "heartbeat_stop",
]
_REQUEST_KINDS = frozenset({"drop", "status", "rate_limit", "slow", "lose_reply"})
#: Kinds that act on the streams open when they are armed, and are used up by it.
ON_ARM_KINDS = frozenset({"stream_mute", "heartbeat_stop"})


class Fault(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One armed fault (see the module docstring for the kinds)."""

    kind: FaultKind
    #: How many requests (or stream cuts / refusals) it affects.
    count: int = 1
    #: Only requests with this method, e.g. ``POST`` ("" matches any).
    method: str = ""
    #: Only paths starting with this, e.g. ``/v3/accounts/ID/orders`` ("" matches any ``/v3`` path).
    path: str = ""
    status: int = 503
    delay_s: float = 2.0
    retry_after_s: float = 1.0
    retry_after_header: bool = False
    after_events: int = 0


class FaultBoard:
    """The armed faults; the simulator consults it for every request and streamed transaction."""

    def __init__(self) -> None:
        self._armed: list[Fault] = []
        #: Faults used up so far, by kind (tests and chaos scripts read this).
        self.fired: dict[str, int] = {}
        self._sent_since: dict[int, int] = {}  # stream_drop fault -> transactions since armed

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
        self._sent_since.clear()

    def armed(self) -> list[Fault]:
        """What is still armed, in order."""
        return list(self._armed)

    def take_request_fault(self, method: str, path: str) -> Fault | None:
        """The first request fault matching, with one use taken off it."""
        for fault in self._armed:
            if fault.kind not in _REQUEST_KINDS:
                continue
            if fault.method and fault.method != method.upper():
                continue
            if not path.startswith(fault.path or "/v3"):
                continue
            self._use(fault)
            return fault
        return None

    def take(self, kind: FaultKind) -> bool:
        """Use up one armed fault of ``kind``; whether there was one."""
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

    def stream_cut_due(self) -> bool:
        """Called once per transaction streamed: whether to cut the streams now."""
        for fault in self._armed:
            if fault.kind != "stream_drop":
                continue
            sent = self._sent_since.get(id(fault), 0) + 1
            if sent < fault.after_events:
                self._sent_since[id(fault)] = sent
                return False
            self._sent_since.pop(id(fault), None)
            self._use(fault)
            return True
        return False

    def _use(self, fault: Fault) -> None:
        self.fired[fault.kind] = self.fired.get(fault.kind, 0) + 1
        self._sent_since.pop(id(fault), None)
        index = next(i for i, f in enumerate(self._armed) if f is fault)
        if fault.count <= 1:
            del self._armed[index]
        else:
            self._armed[index] = msgspec.structs.replace(fault, count=fault.count - 1)
