"""What a paper venue keeps until its file has it: ended orders and their fills.

The venue lets go of an ended order once the file answers for it. Kept
one by one, that was a few dictionary deletes per order on the trio
thread; kept in generations, it is one comparison per venue call: the
calls between two commits of the writer form a generation, and a
generation goes whole once the file has its last batch. At most a few
live at once (the writer commits every ``interval_s``).
"""

from __future__ import annotations

import collections

from ult_actors.brokers.paper.batch import WorkingOrder
from ult_actors.messages import Fill


class _Generation:
    """The ended orders and fills of the calls up to batch ``seq``."""

    __slots__ = ("by_client", "fills", "orders", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self.orders: dict[str, WorkingOrder] = {}
        self.by_client: dict[str, WorkingOrder] = {}
        self.fills: dict[str, list[Fill]] = {}


class Unfiled:
    """Ended orders and fills the file does not have yet (with no file: all of them)."""

    def __init__(self) -> None:
        self._generations = collections.deque([_Generation()])
        #: The writer's committed batch when last looked at.
        self._seen = 0

    def add(self, ended: list[WorkingOrder], fills: list[Fill], seq: int) -> None:
        """Keep what the call recorded as batch ``seq`` ended and filled."""
        current = self._generations[-1]
        current.seq = seq
        # Lists, and each field read once: compiled, that is a plain loop and no look-ups.
        orders, by_client = current.orders, current.by_client
        for working in ended:
            order = working.order
            orders[order.id] = working
            by_client[order.client_order_id] = working
        kept = current.fills
        for fill in fills:
            kept.setdefault(fill.order_id, []).append(fill)

    def let_go(self, committed: int) -> None:
        """Forget the generations whose batches the file has (through ``committed``)."""
        if committed == self._seen:
            return
        self._seen = committed
        generations = self._generations
        while generations and generations[0].seq <= committed:
            generations.popleft()
        # What comes next waits for a later commit than what is kept: a new generation.
        if not generations or generations[-1].orders or generations[-1].fills:
            generations.append(_Generation())

    def order(self, order_id: str) -> WorkingOrder | None:
        """The ended order ``order_id``, if kept."""
        for generation in self._generations:
            working = generation.orders.get(order_id)
            if working is not None:
                return working
        return None

    def by_client_id(self, client_order_id: str) -> WorkingOrder | None:
        """The ended order of ``client_order_id``, if kept."""
        for generation in self._generations:
            working = generation.by_client.get(client_order_id)
            if working is not None:
                return working
        return None

    def fills(self, order_id: str) -> list[Fill]:
        """The kept fills of ``order_id``, oldest first."""
        return [f for g in self._generations for f in g.fills.get(order_id, ())]
