"""A replacement sent again while restart reconciliation settles it is not declared lost.

After a broker actor crash with a replace in flight, reconciliation at start
finds the replacement missing at the venue; meanwhile the same replace (same
replacement client order id) can be sent again and taken, as an emulated
list's peer reduction does when it reacts to a fill during the pass. The
venue's word must win: the replacement stays ``accepted``, not ``rejected``
as never arrived while the venue works it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from tests.durability.harness import FAST, at_venue, config, journal_of, order
from tests.fakes import FakeConnector, FakeVenue
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.errors import NotFound
from ult_actors.messages import Order, OrderUpdate, ReplaceRequest
from ult_actors.service import Service, build_service


class ReplaceRedoneDuringLookup(FakeConnector):
    """The first lookup of ``new_coid`` answers "not there", and meanwhile the replace of
    ``old`` by ``new_coid`` is taken by the venue and its news journaled (an answer the
    venue made just before the replace landed)."""

    def __init__(self, venue: FakeVenue, old: Order, new_coid: str) -> None:
        super().__init__("fake", venue)
        self.old, self.new_coid = old, new_coid
        self.asked = False
        self.landed = trio.Event()

    async def stream_updates(
        self, sink: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        async def noting(update: OrderUpdate) -> None:
            await sink(update)
            if update.order.client_order_id == self.new_coid:
                self.landed.set()

        await super().stream_updates(noting, task_status=task_status)

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        if client_order_id == self.new_coid and not self.asked:
            self.asked = True
            change = ReplaceRequest(
                order_id=self.old.client_order_id,
                client_order_id=self.new_coid,
                qty=Decimal(6),
            )
            await self.replace(self.old, change)
            await self.landed.wait()
            raise NotFound(f"no order with client_order_id {client_order_id!r}")
        return await super().get_order_by_client_id(client_order_id)


@asynccontextmanager
async def running_on(
    tmp: Path, connector: FakeConnector, reconcile: ReconcilePolicy = FAST
) -> AsyncIterator[Service]:
    svc = build_service(
        config(tmp),
        env={},
        rng=random.Random(7),
        connector_factories={"fake": lambda: connector},
        reconcile=reconcile,
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


async def test_a_replacement_taken_while_reconciliation_asks_stays_accepted(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    limit: dict[str, Any] = {"type": "limit", "limit_price": Decimal(90)}
    old = order("c-1", "accepted", oid="1", **limit)
    at_venue(venue, old)
    # What a crash with the replace of c-1 by c-2 in flight leaves: both journaled, the
    # venue still working c-1 (the replace never left); sent a while ago. This run only
    # writes that state: its running check for stuck orders (every 0.05 s with FAST) must
    # not settle it before the run ends, which it did once on a loaded machine.
    writing = dataclasses.replace(FAST, interval_s=3600.0)
    async with running_on(tmp_path, FakeConnector("fake", venue), writing) as svc:
        store = await svc.journal.get()
        await store.record(
            order("c-2", "pending_new", replaces="c-1", age_s=5, **limit), event="replace"
        )
        await store.record(order("c-1", "pending_replace", oid="1", age_s=5, **limit))
    connector = ReplaceRedoneDuringLookup(venue, old, "c-2")
    async with running_on(tmp_path, connector) as svc:
        assert connector.asked
        new = await journal_of(svc, "c-2")
        assert (new.status, new.replaces, new.reject_reason) == ("accepted", "c-1", None)
        replaced = await journal_of(svc, "c-1")
        assert (replaced.status, replaced.replaced_by) == ("replaced", "c-2")
        assert venue.replaces == 1 and venue.submits == 0
