"""A replace is applied at most once, linked both ways, and settled however its answer went.

The tree runs on the fake broker (Alpaca-like replaces: a new order for what
is left, the old one ``replaced``), whose faults lose or refuse a replace.
"""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.durability.harness import FAST, at_venue, config, journal_of, order, running
from tests.fakes import FakeVenue
from ult_actors.errors import NotReplaceable, RiskRejected
from ult_actors.messages import (
    Order,
    OrderReply,
    OrderRequest,
    Replace,
    ReplaceRequest,
    SetKillSwitch,
    Submit,
)
from ult_actors.service import Service

_ids = itertools.count(1)


async def resting(svc: Service, coid: str, qty: int = 10) -> Order:
    request = OrderRequest(
        symbol="AAPL",
        side="buy",
        qty=Decimal(qty),
        type="limit",
        limit_price=Decimal("90"),
        client_order_id=coid,
    )
    reply = await svc.gateway.handle(Submit(id=next(_ids), order=request))
    assert isinstance(reply, OrderReply) and reply.order.status == "accepted"
    return reply.order


async def replace(svc: Service, order_id: str, new_coid: str, **change: object) -> Order:
    request = Replace(
        id=next(_ids),
        change=ReplaceRequest(order_id=order_id, client_order_id=new_coid, **change),  # type: ignore[arg-type]
    )
    with trio.fail_after(10):
        reply = await svc.gateway.handle(request)
    assert isinstance(reply, OrderReply)
    return reply.order


async def test_replace_takes_effect_and_links_both_ways(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        old = await resting(svc, "c-1")
        new = await replace(svc, old.ref, "c-2", limit_price=Decimal("91"), qty=Decimal(12))
        assert (new.client_order_id, new.replaces, new.status) == ("c-2", "c-1", "accepted")
        assert (new.limit_price, new.qty) == (Decimal("91"), Decimal(12))
        replaced = await journal_of(svc, "c-1")
        assert (replaced.status, replaced.replaced_by) == ("replaced", "c-2")
        assert (await journal_of(svc, "c-2")).status == "accepted"
        assert venue.replaces == 1


async def test_a_replace_asked_again_is_applied_once(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        old = await resting(svc, "c-1")
        first = await replace(svc, "c-1", "c-2", limit_price=Decimal("91"))
        again = await replace(svc, old.ref, "c-2", limit_price=Decimal("91"))
        assert again.client_order_id == first.client_order_id == "c-2"
        assert venue.replaces == 1


async def test_a_lost_replace_answer_is_found_not_sent_twice(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        await resting(svc, "c-1")
        venue.lose_replace_replies = 1
        new = await replace(svc, "c-1", "c-2", limit_price=Decimal("91"))
        assert (new.client_order_id, new.status) == ("c-2", "accepted")
        assert venue.replaces == 1
        assert (await journal_of(svc, "c-1")).status == "replaced"


async def test_a_replace_that_never_arrived_leaves_the_order_working(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        await resting(svc, "c-1")
        venue.fail_replaces = 1
        with pytest.raises(Exception, match="503"):
            await replace(svc, "c-1", "c-2", limit_price=Decimal("91"))
        assert (await journal_of(svc, "c-1")).status == "accepted"
        assert (await journal_of(svc, "c-2")).status == "rejected"
        assert venue.replaces == 0
        # The same order can be replaced afterwards.
        assert (await replace(svc, "c-1", "c-3", limit_price=Decimal("92"))).replaces == "c-1"


async def test_a_replace_that_loses_the_race_with_a_fill_is_refused_and_the_fill_kept(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    # No periodic check of working orders: one between the fill and the replace (every
    # 0.05 s with FAST) settled c-1 as filled first: the replace was refused before it
    # reached the venue, and c-2 was never journaled (at load 12-17).
    quiet = dataclasses.replace(FAST, interval_s=3600.0)
    async with running(config(tmp_path), venue, quiet) as svc:
        old = await resting(svc, "c-1")
        # The fill happens at the venue; the service has not heard of it yet.
        from tests.durability.harness import FlakyConnector

        FlakyConnector.mute_stream = True
        try:
            venue.fill(old.id)
            with pytest.raises(NotReplaceable, match="filled"):
                await replace(svc, "c-1", "c-2", limit_price=Decimal("91"))
        finally:
            FlakyConnector.mute_stream = False
        settled = await journal_of(svc, "c-1")
        assert (settled.status, settled.filled_qty) == ("filled", Decimal(10))
        assert (await journal_of(svc, "c-2")).status == "rejected"


async def test_replace_of_a_final_order_names_its_state(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        reply = await svc.gateway.handle(
            Submit(
                id=next(_ids),
                order=OrderRequest(
                    symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="m-1"
                ),
            )
        )
        assert isinstance(reply, OrderReply) and reply.order.status == "filled"
        with pytest.raises(NotReplaceable, match=r"is filled, 1 filled; it cannot be replaced"):
            await replace(svc, "m-1", "m-2", qty=Decimal(2))
        assert venue.replaces == 0


async def test_risk_checks_the_new_terms_and_the_kill_switch(tmp_path: Path) -> None:
    venue = FakeVenue()
    cfg = config(tmp_path)
    cfg.risk.max_order_qty = Decimal(15)
    async with running(cfg, venue) as svc:
        await resting(svc, "c-1")
        with pytest.raises(RiskRejected, match="max_order_qty"):
            await replace(svc, "c-1", "c-2", qty=Decimal(20))
        await svc.gateway.handle(SetKillSwitch(id=next(_ids), on=True))
        await resting_after_halt_refused(svc)
        assert venue.replaces == 0


async def resting_after_halt_refused(svc: Service) -> None:
    venue_order = await journal_of(svc, "c-1")
    assert venue_order.status == "canceled"  # the kill switch canceled it
    with pytest.raises(NotReplaceable, match="canceled"):
        await replace(svc, "c-1", "c-3", limit_price=Decimal("91"))


async def test_restart_settles_a_replace_in_flight(tmp_path: Path) -> None:
    """A crash between the journal's record and the answer. The venue modified one order
    in place (as TWS does: it now goes by c-2 only); the other replace (c-4) never
    arrived, and is not sent as a new order."""
    venue = FakeVenue()
    cfg = config(tmp_path)
    async with running(cfg, venue) as svc:
        store = await svc.journal.get()
        for old_coid, new_coid, oid in (("c-1", "c-2", "1"), ("c-3", "c-4", "3")):
            limit = {"type": "limit", "limit_price": Decimal(90)}
            at_venue(venue, order(old_coid, "accepted", oid=oid, **limit))
            pending = order(new_coid, "pending_new", replaces=old_coid, **limit)
            await store.record(pending, event="replace")
            await store.record(order(old_coid, "pending_replace", oid=oid, **limit))
        # The venue took the first replace in place, then everything stopped.
        del venue.by_client["c-1"]
        at_venue(venue, order("c-2", "accepted", oid="1", type="limit", limit_price=Decimal(91)))
    async with running(cfg, venue) as svc:
        replaced = await journal_of(svc, "c-1")
        assert (replaced.status, replaced.replaced_by) == ("replaced", "c-2")
        assert (await journal_of(svc, "c-2")).status == "accepted"
        assert (await journal_of(svc, "c-3")).status == "accepted"
        never = await journal_of(svc, "c-4")
        assert never.status == "rejected" and "never" in (never.reject_reason or "")
        assert venue.submits == 0  # nothing was sent as a new order
