"""The journal actor: owns the order store for the service's lifetime.

Other actors reach the store through a ``JournalSlot``: it waits while the
journal actor (re)opens the store, so a restart of the journal delays writers
instead of losing their records. The store records each order's latest state;
a write returns only once the record is durable.

A store that cannot be written (disk full) stays open: the journal actor shows
``failed`` in health with the reason while it lasts and ``running`` again once
the store recovers by itself; the router asks ``JournalSlot.check_writable``
before an order goes on, so new orders are refused before they are sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import trio

from ult_actors.errors import JournalUnavailable
from ult_actors.messages import OPEN_STATUSES, Order
from ult_actors.runtime.actor import ActorContext


class OrderStore(Protocol):
    """What the service needs of a journal."""

    #: Why the store cannot be written now (e.g. "disk full"); None while it can.
    unavailable: str | None

    async def availability_changed(self) -> None:
        """Return at the next change of ``unavailable``."""

    async def record(self, order: Order, *, event: str = "update") -> None:
        """Store ``order`` as the latest state of its client order id; return once durable."""

    async def get(self, client_order_id: str) -> Order | None:
        """The latest state of one order by client order id."""

    async def get_by_order_id(self, order_id: str) -> Order | None:
        """The latest state of one order by broker order id."""

    async def find_by_order_id(self, order_id: str) -> list[Order]:
        """Every order, at any broker, whose broker order id is ``order_id``."""

    async def list_orders(
        self, *, open_only: bool = False, broker: str | None = None, limit: int = 1000
    ) -> list[Order]:
        """Orders, newest first."""

    async def non_terminal(self, broker: str | None = None) -> list[Order]:
        """Every order not yet final (restart reconciliation works from these)."""


class MemoryStore:
    """An order store in memory: for ``journal.enabled = false`` and for tests."""

    def __init__(self) -> None:
        self._by_client_id: dict[str, Order] = {}
        #: Broker order id -> client order ids (ids are unique per broker only).
        self._by_order_id: dict[str, set[str]] = {}
        self.writes = 0
        self.unavailable: str | None = None

    async def availability_changed(self) -> None:
        await trio.sleep_forever()  # memory is always writable

    async def record(self, order: Order, *, event: str = "update") -> None:
        self.writes += 1
        self._by_client_id.pop(order.client_order_id, None)  # re-insert: newest last
        self._by_client_id[order.client_order_id] = order
        if order.id:
            self._by_order_id.setdefault(order.id, set()).add(order.client_order_id)

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


class JournalSlot:
    """Where actors find the open store; waits while the journal actor reopens it."""

    def __init__(self) -> None:
        self._store: OrderStore | None = None
        self._ready = trio.Event()

    def set(self, store: OrderStore | None) -> None:
        self._store = store
        if store is not None:
            self._ready.set()
        elif self._ready.is_set():
            self._ready = trio.Event()

    async def get(self) -> OrderStore:
        if self._store is None:
            await self._ready.wait()
        assert self._store is not None
        return self._store

    @property
    def unavailable(self) -> str | None:
        """Why the journal cannot be written now; None while it can (or is reopening)."""
        return self._store.unavailable if self._store is not None else None

    def check_writable(self) -> None:
        """Raise ``JournalUnavailable`` when a new order could not be journaled now."""
        reason = self.unavailable
        if reason is not None:
            raise JournalUnavailable(
                f"journal cannot be written ({reason}): new orders are refused until it"
                " can; cancels, queries and the kill switch still work"
            )


def memory_store_opener(store: MemoryStore | None = None) -> Callable[[], Any]:
    """An opener for a memory store that survives journal actor restarts."""
    kept = store or MemoryStore()

    @asynccontextmanager
    async def open_store() -> AsyncIterator[OrderStore]:
        yield kept

    return open_store


def journal_actor(
    slot: JournalSlot, open_store: Callable[[], AbstractAsyncContextManager[OrderStore]]
) -> Callable[[ActorContext[Any]], Any]:
    """The journal actor body: open the store, publish it in ``slot``, keep it open."""

    async def start(ctx: ActorContext[Any]) -> None:
        async with open_store() as store:
            slot.set(store)
            try:
                ctx.started()
                await _report_availability(ctx, store)
            finally:
                slot.set(None)

    return start


async def _report_availability(ctx: ActorContext[Any], store: OrderStore) -> None:
    """Health follows the store: ``failed`` with the reason while it cannot be written."""
    while True:
        await store.availability_changed()
        reason = store.unavailable
        if reason is not None:
            ctx.log.error("journal cannot be written; refusing new orders", reason=reason)
            ctx.mark_failed(
                JournalUnavailable(
                    f"journal cannot be written ({reason}); new orders refused until it can,"
                    " cancels and queries still work"
                )
            )
        else:
            ctx.log.info("journal writable again; accepting new orders")
            ctx.started()
