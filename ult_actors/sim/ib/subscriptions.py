"""What TWS keeps pushing to an API client that subscribed, as fills change it.

After ``reqPositions`` TWS sends every position, then ``positionEnd``, and
from then on each position as it changes (no further ``positionEnd``) until
``cancelPositions``. After ``reqAccountUpdates`` it sends the account values
and portfolio, then ``accountDownloadEnd``, and from then on the portfolio
line and account values that a fill changes, until unsubscribed. A client
therefore sees a fill's position without asking again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ult_actors.brokers.ib import wire
from ult_actors.sim.ib.exchange import Outgoing, SimExchange, key_of


@dataclass
class Subscriptions:
    """One API client's live subscriptions."""

    positions: bool = False
    account_updates: bool = False

    @property
    def any(self) -> bool:
        """Whether fills concern this client beyond its own orders."""
        return self.positions or self.account_updates


def filled_symbols(outgoing: Iterable[Outgoing]) -> list[str]:
    """The exchange keys whose holdings the executions in ``outgoing`` changed, in order."""
    keys: list[str] = []
    for _, msg in outgoing:
        if isinstance(msg, wire.ExecDetails):
            key = key_of(msg.contract)
            if key not in keys:
                keys.append(key)
    return keys


def pushes(
    subs: Subscriptions, exchange: SimExchange, keys: list[str], now_ns: int
) -> list[wire.Incoming]:
    """What a client subscribed as ``subs`` is sent after fills in ``keys``."""
    out: list[wire.Incoming] = []
    if subs.positions:
        out += [exchange.position_of(k) for k in keys]
    if subs.account_updates:
        out += [exchange.portfolio_of(k) for k in keys]
        out += account_values(exchange)
        out.append(wire.AccountUpdateTime(time=_stamp(now_ns)))
    return out


def account_values(exchange: SimExchange) -> list[wire.Incoming]:
    """Every account value, as ``reqAccountUpdates`` reports them."""
    return [
        wire.AccountValue(key=k, value=v, currency="USD", account=exchange.account)
        for k, v in exchange.account_values().items()
    ]


def account_download(exchange: SimExchange, now_ns: int) -> list[wire.Incoming]:
    """The first answer to ``reqAccountUpdates``: values, portfolio, time, end."""
    return [
        *account_values(exchange),
        *exchange.portfolio(),
        wire.AccountUpdateTime(time=_stamp(now_ns)),
        wire.AccountDownloadEnd(account=exchange.account),
    ]


def _stamp(now_ns: int) -> str:
    return datetime.fromtimestamp(now_ns / 1e9, UTC).strftime("%H:%M")
