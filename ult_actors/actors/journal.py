"""The journal actor: owns the order store for the service's lifetime.

Other actors reach the store through a ``JournalSlot``: it waits while the
journal actor (re)opens the store, so a restart of the journal delays writers
instead of losing their records. The store records each order's latest state;
``record`` returns only once the record is durable (what must be on disk before
an order leaves), ``record_soon`` at once (the brokers' news, committed soon).

A store that cannot be written (disk full) stays open: the journal actor shows
``failed`` in health with the reason while it lasts and ``running`` again once
the store recovers by itself; the router asks ``JournalSlot.check_writable``
before an order goes on, so new orders are refused before they are sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ult_actors.errors import JournalUnavailable
from ult_actors.journal.store import OrderStore, StoreOpener
from ult_actors.runtime.actor import ActorContext
from ult_actors.runtime.intake import IntakeGate


class JournalSlot:
    """Where actors find the open store; waits while the journal actor reopens it."""

    def __init__(self) -> None:
        self._store: OrderStore | None = None
        self._ready = trio.Event()
        #: Closed by the journal while its fold is too far behind (``runtime/intake.py``):
        #: one gate for every store the journal actor opens, read by the IPC connections.
        self.intake = IntakeGate()

    def set(self, store: OrderStore | None) -> None:
        self._store = store
        if store is not None:
            self._ready.set()
        else:
            self.intake.open()  # no store, no fold to wait for
            if self._ready.is_set():
                self._ready = trio.Event()

    @property
    def now(self) -> OrderStore | None:
        """The open store, or ``None`` while the journal actor (re)opens it (``get`` waits)."""
        return self._store

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


def journal_actor(slot: JournalSlot, open_store: StoreOpener) -> Callable[[ActorContext[Any]], Any]:
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
