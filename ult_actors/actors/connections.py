"""What each broker connection reports for health: its state, its stream, its budget.

Broker actors report their state as it changes (``report``), and each change is
published on the event bus (``ConnectionStateChanged``, topic ``health``); the
supervisor's view overrides it while the actor is down (waiting to reconnect:
``connecting``; parked after a crash loop: ``parked``). ``ult health`` reads
``health``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from ult_actors.brokers.base import Connector
from ult_actors.brokers.budget import RateBudget
from ult_actors.messages import ConnectionHealth, ConnectionState, ConnectionStateChanged, Event
from ult_actors.runtime.health import ActorHealth


@dataclass
class _Connection:
    state: ConnectionState
    since: int
    connector: Connector | None = None


@dataclass
class ConnectionBoard:
    """Every broker connection's latest state, by broker name."""

    now_ns: Callable[[], int]
    #: Where each change of state is published (the event bus).
    publish: Callable[[Event], None] = lambda _event: None
    budgets: dict[str, RateBudget] = field(default_factory=dict)
    #: The broker each broker actor serves, by actor name.
    actors: dict[str, str] = field(default_factory=dict)
    _connections: dict[str, _Connection] = field(default_factory=dict)

    def report(
        self, broker: str, state: ConnectionState, connector: Connector, reason: str = ""
    ) -> None:
        """A broker actor's connection entered ``state`` (``reason``: why, if it says)."""
        known = self._connections.get(broker)
        if known is None or known.state != state:
            now = self.now_ns()
            self._connections[broker] = _Connection(state, now, connector)
            self.publish(ConnectionStateChanged(broker=broker, state=state, reason=reason, ts=now))
        else:
            known.connector = connector

    def health(self, actors: Iterable[ActorHealth]) -> dict[str, ConnectionHealth]:
        """Each connection now, the supervisor's view of ``actors`` overriding while down."""
        down: dict[str, ConnectionState] = {}
        for actor in actors:
            broker = self.actors.get(actor.name)
            if broker is None:
                continue
            if actor.state in ("connecting", "restarting"):
                down[broker] = "connecting"
            elif actor.state == "failed" and (
                actor.last_error is None or actor.last_error.type not in _FATAL
            ):
                down[broker] = "parked"  # the supervisor retries it after ``park_s``
        out: dict[str, ConnectionHealth] = {}
        for broker in sorted(set(self._connections) | set(down) | set(self.budgets)):
            known = self._connections.get(broker)
            state = down.get(broker) or (known.state if known else "connecting")
            since = known.since if known is not None and known.state == state else 0
            budget = self.budgets.get(broker)
            out[broker] = ConnectionHealth(
                state=state,
                since=since,
                last_message_age_s=_age(known.connector if known else None),
                budget=budget.health() if budget is not None else None,
            )
        return out


#: Errors that leave a connection ``failed`` for good (fix the configuration), not parked.
_FATAL = frozenset({"AuthFailed", "ConfigError"})


def _age(connector: Connector | None) -> float | None:
    """Seconds since the connector's stream last said anything, if it says (``last_message_at``)."""
    last = getattr(connector, "last_message_at", None)
    if not isinstance(last, float):
        return None
    return round(max(0.0, trio.current_time() - last), 3)
