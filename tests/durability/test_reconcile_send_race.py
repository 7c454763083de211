"""A send that starts while the running reconciliation reads the journal is left to finish.

Reconciliation rules an order stuck in flight and not found at the broker
``rejected`` (never reached it). The same order can be sent again meanwhile
(a native list asked again by its client, a replace redone): its send is in
flight and may land. The check for it must come after the pass's last
journal read, so no send can start between the check and the verdict.
"""

from __future__ import annotations

from tests.durability.harness import FAST, order
from ult_actors.actors.reconcile import reconcile_stuck
from ult_actors.journal import MemoryStore
from ult_actors.messages import Order


class _SendStartsWhileRead(MemoryStore):
    """A journal whose first read of ``coid`` lets a send of it start (the pass yields there)."""

    def __init__(self, coid: str, sending: set[str]) -> None:
        super().__init__()
        self.coid, self.sending = coid, sending

    async def get(self, client_order_id: str) -> Order | None:
        if client_order_id == self.coid:
            self.sending.add(client_order_id)
        return await super().get(client_order_id)


class _Side:
    """A broker that has no order at all, and the sends of this service in flight."""

    name = "fake"

    def __init__(self, store: MemoryStore, sending: set[str]) -> None:
        self.store, self.sending = store, sending

    async def lookup(self, client_order_id: str) -> Order | None:
        return None

    async def open_orders(self) -> list[Order]:
        return []

    async def settle(self, order: Order) -> Order:
        await self.store.record(order)
        return order

    async def resubmit(self, order: Order) -> Order:
        raise AssertionError("a running pass sends nothing")

    def in_flight(self, client_order_id: str) -> bool:
        return client_order_id in self.sending


async def test_an_order_sent_again_while_the_pass_reads_its_record_is_not_ruled_never_arrived() -> (
    None
):
    sending: set[str] = set()
    store = _SendStartsWhileRead("leg-1", sending)
    await store.record(order("leg-1", "pending_new", age_s=60))
    summary = await reconcile_stuck(_Side(store, sending), store, FAST)
    assert summary.never_arrived == 0
    still = await store.get("leg-1")
    assert still is not None and still.status == "pending_new"
