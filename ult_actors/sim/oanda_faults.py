"""Failures the OANDA simulator can inject, set from tests or over HTTP.

A ``FaultRule`` applies to the next ``count`` requests whose method and path
match (``count`` 0: every one until cleared); the first matching rule wins.
Actions:

- ``drop``: close the connection without reading further or replying (the
  request is *not* applied).
- ``status``: reply ``status`` with a v20 error body (503, 500, 429 with a
  ``Retry-After`` of ``retry_after_s``, ...); not applied.
- ``delay``: wait ``delay_s`` seconds, then serve normally (slow replies).
- ``reply_lost``: apply the request, then close the connection instead of
  replying (applied but the answer lost).

Stream switches act on open transaction and pricing streams at once:
``heartbeats = false`` stops heartbeats (transactions still flow);
``silent = true`` stops every line, so the connection looks alive to TCP
but is dead to the client.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

FaultAction = Literal["drop", "status", "delay", "reply_lost"]


class FaultRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One injected failure for the next ``count`` matching requests."""

    action: FaultAction
    count: int = 1
    #: Only requests with this method (any if null).
    method: str | None = None
    #: Only requests whose path contains this text (any if null).
    path: str | None = None
    status: int = 503
    retry_after_s: float | None = None
    delay_s: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and (
            self.path is None or self.path in path
        )


class FaultUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /_sim/faults``: rules to add and switches to set."""

    rules: list[FaultRule] = msgspec.field(default_factory=list)
    heartbeats: bool | None = None
    silent: bool | None = None
    drop_streams: bool = False
    clear: bool = False


class Faults:
    """The simulator's current fault plan."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.heartbeats = True
        self.silent = False

    def add(self, rule: FaultRule) -> None:
        """Queue ``rule`` after the ones already set."""
        if rule.count < 0:
            raise ValueError("count must be >= 0")
        self.rules.append(rule)

    def clear(self) -> None:
        """No rules, heartbeats on, streams talking."""
        self.rules.clear()
        self.heartbeats = True
        self.silent = False

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first rule matching this request, counting it as used."""
        for i, rule in enumerate(self.rules):
            if rule.matches(method, path):
                if rule.count == 1:
                    del self.rules[i]
                elif rule.count > 1:
                    self.rules[i] = msgspec.structs.replace(rule, count=rule.count - 1)
                return rule
        return None

    def snapshot(self) -> dict[str, Any]:
        """The plan as plain data (``GET /_sim/faults``)."""
        return {
            "rules": msgspec.to_builtins(self.rules),
            "heartbeats": self.heartbeats,
            "silent": self.silent,
        }
