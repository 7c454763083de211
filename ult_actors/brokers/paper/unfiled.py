"""What a paper venue keeps until its file has it: ended orders and their fills.

The venue lets go of an ended order once the file answers for it. Kept
one by one, that was a few dictionary deletes per order on the trio
thread; kept in generations, it is one comparison per venue call: the
calls between two commits of the writer form a generation, and a
generation goes whole once the file has its last batch. At most a few
live at once (the writer commits every ``interval_s``). A call appends
its ended orders and fills to its generation's lists; they are indexed
only when one is looked up.
"""

from __future__ import annotations

import collections

from ult_actors.brokers.paper.batch import WorkingOrder
from ult_actors.messages import Fill


class _Generation:
    """The ended orders and fills of the calls up to batch ``seq``.

    A call only appends to its lists; they are indexed when first looked up
    (a read of an order the file does not have yet: rare), not on every call.
    """

    __slots__ = ("_by_client", "_fills", "_indexed", "_orders", "ended", "filled", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self.ended: list[WorkingOrder] = []
        self.filled: list[Fill] = []
        self._orders: dict[str, WorkingOrder] = {}
        self._by_client: dict[str, WorkingOrder] = {}
        self._fills: dict[str, list[Fill]] = {}
        #: How many of ``ended`` and of ``filled`` the maps hold.
        self._indexed = (0, 0)

    def __bool__(self) -> bool:
        return bool(self.ended or self.filled)

    def orders(self) -> dict[str, WorkingOrder]:
        """The ended orders by id."""
        self._index()
        return self._orders

    def by_client(self) -> dict[str, WorkingOrder]:
        """The ended orders by client order id."""
        self._index()
        return self._by_client

    def fills(self) -> dict[str, list[Fill]]:
        """The fills by order id, oldest first."""
        self._index()
        return self._fills

    def _index(self) -> None:
        orders_done, fills_done = self._indexed
        for working in self.ended[orders_done:]:
            order = working.order
            self._orders[order.id] = working
            self._by_client[order.client_order_id] = working
        for fill in self.filled[fills_done:]:
            self._fills.setdefault(fill.order_id, []).append(fill)
        self._indexed = (len(self.ended), len(self.filled))


class Unfiled:
    """Ended orders and fills the file does not have yet (with no file: all of them)."""

    def __init__(self) -> None:
        self._generations = collections.deque([_Generation()])
        #: The writer's committed batch when last looked at.
        self._seen = 0

    def add(self, ended: list[WorkingOrder], fills: list[Fill], seq: int) -> None:
        """Keep what the call recorded as batch ``seq`` ended and filled (copied: the
        caller may reuse its lists)."""
        current = self._generations[-1]
        current.seq = seq
        current.ended.extend(ended)
        current.filled.extend(fills)

    def let_go(self, committed: int) -> None:
        """Forget the generations whose batches the file has (through ``committed``)."""
        if committed == self._seen:
            return
        self._seen = committed
        generations = self._generations
        while generations and generations[0].seq <= committed:
            generations.popleft()
        # What comes next waits for a later commit than what is kept: a new generation.
        if not generations or generations[-1]:
            generations.append(_Generation())

    def order(self, order_id: str) -> WorkingOrder | None:
        """The ended order ``order_id``, if kept."""
        for generation in self._generations:
            working = generation.orders().get(order_id)
            if working is not None:
                return working
        return None

    def by_client_id(self, client_order_id: str) -> WorkingOrder | None:
        """The ended order of ``client_order_id``, if kept."""
        for generation in self._generations:
            working = generation.by_client().get(client_order_id)
            if working is not None:
                return working
        return None

    def fills(self, order_id: str) -> list[Fill]:
        """The kept fills of ``order_id``, oldest first."""
        return [f for g in self._generations for f in g.fills().get(order_id, ())]
