"""What ties Alpaca's orders to ours beyond the order itself: leg ids, replace links and outcomes.

- Alpaca gives the exits of a bracket / oco / oto client order ids of its
  own; ours, and each leg's place in its list, are remembered by Alpaca
  order id so every later report of the leg comes under our id.
- A replace links two Alpaca order ids (``replaces`` / ``replaced_by``);
  ours link client order ids, remembered here by Alpaca id.
- A leg can be reported on the stream before the reply that names it has
  been read: while a list is being placed, ``wait_adopted`` holds such a
  report until the reply is in.
- Whether a replace took effect is told on the stream after its reply
  (``replaced`` for the old order, or ``rejected`` for the new one when a
  fill got there first); ``wait_outcome`` waits for that word.

All bounded: the oldest entries are forgotten first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import msgspec
import trio

from ult_actors.messages import Leg, Order
from ult_actors.recent import Recent

ReplaceOutcome = Literal["replaced", "rejected"]
_KEPT = 10_000


class OrderLinks:
    """Alpaca order id -> our client order id (and list leg), and replace outcomes heard."""

    def __init__(self) -> None:
        self._ours: Recent[str, tuple[str, Leg | None]] = Recent(_KEPT)
        self._alpaca_ids: Recent[str, str] = Recent(_KEPT)
        self._outcomes: Recent[str, ReplaceOutcome] = Recent(_KEPT)
        self._heard = trio.Event()
        self._lists_in_flight = 0

    @contextmanager
    def placing_list(self) -> Iterator[None]:
        """Around the request that places an order list (see ``wait_adopted``)."""
        self._lists_in_flight += 1
        try:
            yield
        finally:
            self._lists_in_flight -= 1
            self._wake()

    async def wait_adopted(self, alpaca_id: str) -> None:
        """Wait while ``alpaca_id`` is unknown and a list being placed may turn out to own it."""
        while self._lists_in_flight and alpaca_id not in self._ours:
            await self._heard.wait()

    def remember(self, alpaca_id: str, client_order_id: str, leg: Leg | None = None) -> None:
        """``alpaca_id`` is our ``client_order_id`` (a leg of a list when ``leg`` is set)."""
        self._ours.put(alpaca_id, (client_order_id, leg))
        self._alpaca_ids.put(client_order_id, alpaca_id)
        self._wake()

    def client_order_id(self, alpaca_id: str) -> str | None:
        """Our client order id for an Alpaca order id, when known here."""
        known = self._ours.get(alpaca_id)
        return known[0] if known is not None else None

    def alpaca_id(self, client_order_id: str) -> str | None:
        """Alpaca's id for one of our client order ids that Alpaca does not know (a leg's)."""
        return self._alpaca_ids.get(client_order_id)

    def ours(self, order: Order) -> Order:
        """``order`` under our client order id and with its list leg, when it is a leg of ours."""
        known = self._ours.get(order.id)
        if known is None:
            return order
        client_order_id, leg = known
        return msgspec.structs.replace(order, client_order_id=client_order_id, leg=leg or order.leg)

    def hear(self, replacement_id: str, outcome: ReplaceOutcome) -> None:
        """The stream told how the replace that made ``replacement_id`` ended."""
        if replacement_id not in self._outcomes:
            self._outcomes.put(replacement_id, outcome)
            self._wake()

    async def wait_outcome(self, replacement_id: str, timeout_s: float) -> ReplaceOutcome | None:
        """How the replace ended, once the stream says (``None``: not heard in ``timeout_s``)."""
        with trio.move_on_after(timeout_s):
            while (outcome := self._outcomes.get(replacement_id)) is None:
                await self._heard.wait()
            return outcome
        return None

    def _wake(self) -> None:
        self._heard.set()
        self._heard = trio.Event()
