"""An order store in memory: for ``journal.enabled = false`` and for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ult_actors.journal.store import OrderStore, StoreOpener
from ult_actors.messages import OPEN_STATUSES, Fill, Order, ReportQuery
from ult_actors.report.inputs import CostInputs, OrdersAndFills


class MemoryStore:
    """An order store in memory: for ``journal.enabled = false`` and for tests."""

    def __init__(self) -> None:
        self._by_client_id: dict[str, Order] = {}
        #: Broker order id -> client order ids (ids are unique per broker only).
        self._by_order_id: dict[str, set[str]] = {}
        self.writes = 0
        self._fills: dict[tuple[str, str], Fill] = {}
        self.unavailable: str | None = None

    async def availability_changed(self) -> None:
        await trio.sleep_forever()  # memory is always writable

    async def record(
        self, order: Order, *, event: str = "update", fsync_by_ack: bool = False
    ) -> None:
        self.record_soon(order, event=event)

    def record_now(
        self,
        order: Order,
        *,
        event: str = "update",
        fsync_by_ack: bool = False,
        answer_follows: bool = False,
    ) -> None:
        self.record_soon(order, event=event)

    def record_answer(self, order: Order) -> None:
        self.record_soon(order)

    def records_now(self, fsync_by_ack: bool = False) -> bool:
        return True

    def acks_wait(self) -> bool:
        return False  # nothing is left to an fsync

    def lacks(self, client_order_id: str) -> bool:
        return client_order_id not in self._by_client_id

    async def durable(self, client_order_id: str) -> None:
        return None  # nothing is left to an fsync

    def durable_now(self, client_order_id: str) -> bool:
        return True  # nothing is left to an fsync

    def record_soon(self, order: Order, *, event: str = "update") -> None:
        self.writes += 1
        self._by_client_id.pop(order.client_order_id, None)  # re-insert: newest last
        self._by_client_id[order.client_order_id] = order
        if order.id:
            self._by_order_id.setdefault(order.id, set()).add(order.client_order_id)

    def record_fill(self, fill: Fill) -> None:
        self._fills.setdefault((fill.broker, fill.fill_id), fill)

    async def cost_inputs(self, query: ReportQuery) -> CostInputs:
        return OrdersAndFills(self._by_client_id.values(), self._fills.values())

    async def get(self, client_order_id: str) -> Order | None:
        return self._by_client_id.get(client_order_id)

    async def get_by_order_id(self, order_id: str) -> Order | None:
        found = await self.find_by_order_id(order_id)
        return found[-1] if found else None

    async def find_by_order_id(self, order_id: str) -> list[Order]:
        orders = (self._by_client_id[c] for c in sorted(self._by_order_id.get(order_id, ())))
        return [o for o in orders if o.id == order_id]

    async def list_orders(
        self, *, open_only: bool = False, broker: str | None = None, limit: int = 1000
    ) -> list[Order]:
        out: list[Order] = []
        for order in reversed(self._by_client_id.values()):
            if open_only and order.status not in OPEN_STATUSES:
                continue
            if broker is not None and order.broker != broker:
                continue
            out.append(order)
            if len(out) >= limit:
                break
        return out

    async def non_terminal(self, broker: str | None = None) -> list[Order]:
        return [
            o
            for o in self._by_client_id.values()
            if o.status in OPEN_STATUSES and (broker is None or o.broker == broker)
        ]


def memory_store_opener(store: MemoryStore | None = None) -> StoreOpener:
    """An opener for a memory store that survives journal actor restarts."""
    kept = store or MemoryStore()

    @asynccontextmanager
    async def open_store() -> AsyncIterator[OrderStore]:
        yield kept

    return open_store
