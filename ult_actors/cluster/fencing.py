"""The local fence of an active instance: nothing leaves for a venue once its lease may have
run out on the database's clock.

The journal refuses a stale epoch's writes, but an order journaled just
before the process froze (a pause, a stopped VM) would still be sent when it
wakes, before its renewal task runs and finds the lease lost. So every
request that changes something at a venue (submit, replace, list, cancel,
close) first compares the monotonic clock with the lease's local deadline,
counted from when the winning or renewing request was *sent*: the database
extended the lease from a moment no earlier than that, so the instance never
believes its lease longer than the database does.

Only a cluster service's connectors are wrapped (``fenced``): a single-host
service has no check at all.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, cast

import trio

from ult_actors.brokers.base import Connector
from ult_actors.errors import ServiceBusy
from ult_actors.messages import Order, OrderRequest, Position


class LeaseExpired(ServiceBusy):
    """This instance's lease may have run out: it sends nothing more, as a standby would."""


class LeaseDeadline:
    """Until when (trio's clock) this instance may send to venues; ``-inf`` while not active.

    ``margin_s`` is kept back from the lease's end: the time between the check
    and the socket write, and the two clocks' small difference in rate.
    """

    def __init__(self, margin_s: float) -> None:
        self.margin_s = margin_s
        self.send_by = -math.inf

    def held_until(self, valid_until: float) -> None:
        """The lease holds until ``valid_until`` (trio's clock)."""
        self.send_by = valid_until - self.margin_s

    def lost(self) -> None:
        """The lease is gone: refuse every send from now on."""
        self.send_by = -math.inf

    def check(self, what: str) -> None:
        """``LeaseExpired`` if the lease may be over (one comparison: the hot path)."""
        if trio.current_time() >= self.send_by:
            raise LeaseExpired(
                f"not sending {what}: this instance's cluster lease may have run out"
                " (a standby may have taken over); ask the active instance (an order"
                " journaled here is reconciled there)"
            )


class FencedConnector:
    """``inner`` with ``lease`` checked immediately before every request that changes
    something at the venue; reads and everything else pass straight through.

    ``replace``, ``submit_list`` and ``submit_answer`` exist here only if ``inner`` has
    them, so ``isinstance`` against the optional protocols answers as for ``inner``.
    """

    def __init__(self, inner: Connector, lease: LeaseDeadline) -> None:
        self._inner = inner
        self._lease = lease

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in _OPTIONAL_SENDS:
            attr = self._checked(name, attr)
            setattr(self, name, attr)  # wrapped once, then found without this call
        return attr

    @property
    def answers_now(self) -> bool:
        """Never through the fence (``AnswersAtOnce``): the inner venue's plain answer would
        skip the lease check every send through here makes; orders take the awaited
        ``submit_answer``, checked."""
        return False

    def check(self, what: str) -> None:
        """``LeaseExpired`` now if the lease may be over: for work that would read or
        journal on the way to a send the lease would refuse anyway."""
        self._lease.check(what)

    def _checked(self, what: str, send: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        lease = self._lease

        async def checked(*args: Any, **kwargs: Any) -> Any:
            lease.check(what)
            return await send(*args, **kwargs)

        return checked

    async def submit(self, request: OrderRequest) -> Order:
        self._lease.check(f"order {request.client_order_id}")
        return await self._inner.submit(request)

    async def cancel(self, order_id: str) -> Order:
        self._lease.check(f"cancel of {order_id}")
        return await self._inner.cancel(order_id)

    async def close_position(self, position: Position, client_order_id: str) -> Order | None:
        self._lease.check(f"close of {position.symbol}")
        return await self._inner.close_position(position, client_order_id)

    async def close_all_positions(self) -> list[Order] | None:
        self._lease.check("close of all positions")
        return await self._inner.close_all_positions()


_OPTIONAL_SENDS = frozenset({"replace", "submit_list", "submit_answer"})


def check_fence(connector: Connector, what: str) -> None:
    """``LeaseExpired`` now if ``connector`` is fenced and its lease may be over; nothing
    for a single host's connector."""
    if isinstance(connector, FencedConnector):
        connector.check(what)


def fenced(make: Callable[[], Connector], lease: LeaseDeadline) -> Callable[[], Connector]:
    """``make``, its connectors fenced by ``lease``."""
    return lambda: cast(Connector, FencedConnector(make(), lease))
