"""Fault switches shared by the broker simulators: what to break, for how many requests.

A fault is data, so the same spec arms it from a test (``sim.arm(...)``),
from the command line (``--fault JSON``) or from another process
(``POST /_sim/faults`` with a fault or a list of faults). Faults apply in
the order armed; each matching request uses up one ``count``.

The kinds every simulator knows (each simulator's module says how its
broker shapes the replies, and may add kinds of its own):

- ``drop``: close the connection without a reply (nothing applied).
- ``status``: answer ``status`` in the broker's error shape (nothing applied).
- ``rate_limit``: answer 429 (``retry_after_s``; ``Retry-After`` when
  ``retry_after_header``).
- ``slow``: wait ``delay_s`` seconds, then handle the request normally.
- ``lose_reply``: apply the request, then close the connection without a reply.
- ``garble_reply``: apply the request, then answer its status with the body
  cut in half (what a mangling proxy hands on): the client cannot read it.
- ``stream_drop``: cut every stream connection once ``after_events`` more
  events have been streamed; 0 cuts at once.
- ``stream_refuse``: refuse the next ``count`` stream connections (503).
- ``stream_mute``: every current stream stays open but goes silent (a
  half-open connection). Takes effect when armed.

Request faults match ``method`` ("" any) and a path prefix ``path`` (""
any path under the board's ``api_prefix``).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

#: The kinds every simulator knows (a simulator's own ``Fault`` may add more).
SharedKind = Literal[
    "drop",
    "status",
    "rate_limit",
    "slow",
    "lose_reply",
    "garble_reply",
    "stream_drop",
    "stream_refuse",
    "stream_mute",
]
#: The kinds a request (not a stream) can trip.
REQUEST_KINDS = frozenset({"drop", "status", "rate_limit", "slow", "lose_reply", "garble_reply"})


class FaultSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One fault (see the module docstring); each simulator narrows ``kind`` to its own kinds."""

    kind: str
    #: How many requests (or stream cuts / refusals) it affects.
    count: int = 1
    #: Only requests with this method, e.g. ``POST`` ("" matches any).
    method: str = ""
    #: Only paths starting with this ("" matches any path under the API prefix).
    path: str = ""
    status: int = 503
    delay_s: float = 2.0
    retry_after_s: float = 1.0
    retry_after_header: bool = False
    after_events: int = 0


F = TypeVar("F", bound=FaultSpec)


def garbled(body: bytes) -> bytes:
    """``body`` cut in half: a reply a mangling or truncating proxy would pass on."""
    return body[: len(body) // 2]


def decode_faults(body: Any, fault_type: type[F]) -> list[F]:
    """The faults in a ``POST /_sim/faults`` body: one fault or a list of them.

    ``msgspec.ValidationError`` names what is wrong with a spec.
    """
    specs = body if isinstance(body, list) else [body]
    return [msgspec.convert(spec, fault_type) for spec in specs]


class FaultBoard:
    """The armed faults; a simulator consults it for every request and streamed event."""

    def __init__(self, api_prefix: str) -> None:
        #: Where a request fault with no ``path`` applies (``/v2``, ``/v3``, ...).
        self.api_prefix = api_prefix
        self._armed: list[FaultSpec] = []
        #: Faults used up so far, by kind (tests and chaos scripts read this).
        self.fired: dict[str, int] = {}
        self._sent_since: dict[int, int] = {}  # stream_drop fault -> events since armed

    def arm(self, fault: FaultSpec) -> None:
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

    def armed(self) -> list[FaultSpec]:
        """What is still armed, in order."""
        return list(self._armed)

    def listing(self) -> dict[str, Any]:
        """The admin endpoint's reply body: ``{"armed": [...]}``."""
        return {"armed": msgspec.to_builtins(self._armed)}

    def report(self) -> dict[str, Any]:
        """Armed and fired faults, for a simulator's ``/_sim/state``."""
        return {"faults": msgspec.to_builtins(self._armed), "fired": dict(self.fired)}

    def take_request_fault(self, method: str, path: str) -> FaultSpec | None:
        """The first request fault matching, with one use taken off it."""
        for fault in self._armed:
            if fault.kind not in REQUEST_KINDS:
                continue
            if fault.method and fault.method != method:
                continue
            if not path.startswith(fault.path or self.api_prefix):
                continue
            self._use(fault)
            return fault
        return None

    def take(self, kind: str) -> bool:
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
        """Called once per event streamed: whether to cut the streams now."""
        for fault in self._armed:
            if fault.kind != "stream_drop":
                continue
            sent = self._sent_since.get(id(fault), 0) + 1
            if sent < fault.after_events:
                self._sent_since[id(fault)] = sent
                return False
            self._use(fault)
            return True
        return False

    def _use(self, fault: FaultSpec) -> None:
        self.fired[fault.kind] = self.fired.get(fault.kind, 0) + 1
        self._sent_since.pop(id(fault), None)
        index = next(i for i, f in enumerate(self._armed) if f is fault)
        if fault.count <= 1:
            del self._armed[index]
        else:
            # A fresh struct, so a list ``armed()`` returned earlier keeps what it saw.
            self._armed[index] = msgspec.structs.replace(fault, count=fault.count - 1)
