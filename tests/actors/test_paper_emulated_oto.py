"""The service on the real paper broker, holding an OTO itself: the child goes out in pieces
as the parent fills, and a release a crash dropped is still owed after it.

Paper here carries no OTO (as in the chaos run), so the service releases the child:
each fill of the parent one more piece (``<child>.2`` ...). While the parent may still
fill, the rest of the child is on record as a held piece; a crash of the broker actor
right after the parent's last fill (its release not yet begun) leaves that held piece
for the next start to release, even when the child and every piece before had filled.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from tests.actors.harness import journaled, paper_lists_service, submit_named_list
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.client import order_request, oto_request
from ult_actors.errors import NotFound
from ult_actors.messages import (
    Cancel,
    Contingency,
    Order,
    OrderReply,
    OrderUpdate,
)
from ult_actors.service import Service

_ids = itertools.count(1)


class CrashingPaper(PaperConnector):
    """Paper without native OTOs whose update stream crashes the broker actor once, right
    after handing over the update that fills ``crash_on`` (a client order id)."""

    native_contingencies: frozenset[Contingency] = frozenset({"bracket"})

    def __init__(self, settings: PaperSettings, crashes: list[str]) -> None:
        super().__init__("paper", settings)
        self.crashes = crashes  # [the id to crash on], emptied by the crash (every incarnation)

    async def stream_updates(
        self, sink: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        async def crashing(update: OrderUpdate) -> None:
            await sink(update)
            order = update.order
            if (
                self.crashes
                and order.client_order_id == self.crashes[0]
                and order.status == "filled"
            ):
                self.crashes.clear()
                # No checkpoint since the fill was taken in: its release has not begun.
                raise RuntimeError("injected: broker actor crashed after a parent's fill")

        await super().stream_updates(crashing, task_status=task_status)


@asynccontextmanager
async def running(
    tmp_path: Path, crashes: list[str], made: list[CrashingPaper]
) -> AsyncIterator[Service]:
    """The service on paper (its clock stopped: fills only as the test executes them)."""

    def connector(settings: PaperSettings) -> CrashingPaper:
        made.append(CrashingPaper(settings, crashes))
        return made[-1]

    async with paper_lists_service(tmp_path, connector) as svc:
        yield svc


async def at_venue(tmp_path: Path, *coids: str) -> dict[str, Order]:
    """What the paper account holds of ``coids``, read by a connector of its own."""
    venue = PaperConnector("paper", PaperSettings(state_path=str(tmp_path / "paper-paper.db")))
    await venue.connect()
    try:
        found = {}
        for coid in coids:
            try:
                found[coid] = await venue.get_order_by_client_id(coid)
            except NotFound:
                continue
        return found
    finally:
        await venue.disconnect()


async def place_oto(svc: Service) -> None:
    """A buy limit parent far below the market (it fills only as executed) and a sell
    limit child far above it (it rests until executed)."""
    oto = oto_request(
        order_request("AAPL", "buy", 10, type="limit", limit_price="100"),
        order_request("AAPL", "sell", 10, type="limit", limit_price="1000"),
        list_id="o",
    )
    legs = await submit_named_list(svc, oto, "p", "k")
    assert [o.status for o in legs] == ["accepted", "held"]


async def test_a_parent_fill_whose_release_a_crash_dropped_is_released_at_the_next_start(
    tmp_path: Path,
) -> None:
    crashes = ["p"]
    made: list[CrashingPaper] = []
    async with running(tmp_path, crashes, made) as svc:
        await place_oto(svc)
        parent = await journaled(svc, "p", "accepted")
        made[-1].execute(parent.id, 4)
        child = await journaled(svc, "k", "accepted")
        assert child.qty == Decimal(4)
        made[-1].execute(child.id, 4)
        await journaled(svc, "k", "filled")
        # The child and its only piece have ended; the parent's last 6 fill, and the
        # broker actor crashes before it acts on that fill.
        made[-1].execute(parent.id, 6)
        piece = await journaled(svc, "k.2", "accepted")
        assert (piece.qty, piece.side, piece.type) == (Decimal(6), "sell", "limit")
        assert not crashes and len(made) == 2  # released by the incarnation after the crash
    async with running(tmp_path, crashes, made) as svc:
        # Started again with the last piece working: nothing more is released.
        piece = await journaled(svc, "k.2", "accepted")
        made[-1].execute(piece.id, 6)
        await journaled(svc, "k.2", "filled")
        assert await (await svc.journal.get()).get("k.3") is None
    held = await at_venue(tmp_path, "k", "k.2", "k.3")
    assert {c: o.qty for c, o in held.items()} == {"k": Decimal(4), "k.2": Decimal(6)}


async def test_a_parent_canceled_after_a_part_filled_ends_the_rest_its_child_held(
    tmp_path: Path,
) -> None:
    made: list[CrashingPaper] = []
    async with running(tmp_path, [], made) as svc:
        await place_oto(svc)
        parent = await journaled(svc, "p", "accepted")
        made[-1].execute(parent.id, 4)
        await journaled(svc, "k", "accepted")
        reply = await svc.gateway.handle(Cancel(id=next(_ids), order_id="p"))
        assert isinstance(reply, OrderReply) and reply.order.status == "canceled"
        rest = await journaled(svc, "k.2", "canceled")
        assert "parent ended" in (rest.reject_reason or "")
    assert set(await at_venue(tmp_path, "k", "k.2")) == {"k"}
