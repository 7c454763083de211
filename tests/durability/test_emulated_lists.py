"""Order lists a venue cannot carry are held by the service: children sent as their parent
fills, peers canceled or reduced, everything resumed after a restart.

The fake broker has no native lists (and Alpaca-like replaces), so every list here
is emulated; its stream can be muted to play "this happened while we were away".
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import trio

from tests.durability.harness import FlakyConnector, config, journal_of, running
from tests.fakes import FakeVenue
from ult_actors.client import bracket_request, oco_request, order_request, oto_request
from ult_actors.messages import (
    Cancel,
    Leg,
    Order,
    OrderListRequest,
    OrderReply,
    OrdersReply,
    SubmitList,
)
from ult_actors.service import Service

_ids = itertools.count(1)


async def submit_list(svc: Service, request: OrderListRequest) -> list[Order]:
    with trio.fail_after(10):
        reply = await svc.gateway.handle(SubmitList(id=next(_ids), orders=request))
    assert isinstance(reply, OrdersReply)
    return reply.orders


async def status_of(svc: Service, coid: str, *wanted: str) -> Order:
    """Wait (bounded) until the journal has ``coid`` in one of ``wanted``."""
    with trio.fail_after(10):
        while True:
            store = await svc.journal.get()
            found = await store.get(coid)
            if found is not None and found.status in wanted:
                return found
            await trio.sleep(0.01)


def at_venue(venue: FakeVenue, coid: str) -> str:
    return venue.by_client[coid]


def named(request: OrderListRequest, *coids: str) -> OrderListRequest:
    legs = [
        leg.__class__(
            **{**{f: getattr(leg, f) for f in leg.__struct_fields__}, "client_order_id": c}
        )
        for leg, c in zip(request.legs, coids, strict=True)
    ]
    return OrderListRequest(contingency=request.contingency, legs=legs, list_id=f"{coids[0]}-l")


OTO = oto_request(
    order_request("AAPL", "buy", 10, type="limit", limit_price="90"),
    order_request("AAPL", "sell", 10, type="limit", limit_price="120"),
)


async def test_an_oto_child_is_held_then_released_in_pieces_as_the_parent_fills(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        parent, child = await submit_list(svc, named(OTO, "p-1", "k-1"))
        assert (parent.status, child.status) == ("accepted", "held")
        assert child.leg is not None and child.leg.parent_id == "p-1" and child.leg.emulated
        assert "k-1" not in venue.by_client  # held here, not at the venue
        venue.fill(at_venue(venue, "p-1"), Decimal(4))
        first = await status_of(svc, "k-1", "accepted")
        assert first.qty == Decimal(4)
        venue.fill(at_venue(venue, "p-1"))
        second = await status_of(svc, "k-1.2", "accepted")
        assert second.qty == Decimal(6) and second.leg is not None
        assert second.leg.parent_id == "p-1"
        total = sum(venue.orders[at_venue(venue, c)].qty for c in ("k-1", "k-1.2"))
        assert total == Decimal(10) and "k-1.3" not in venue.by_client


async def test_canceling_an_unfilled_parent_cancels_its_held_children(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        await submit_list(svc, named(OTO, "p-1", "k-1"))
        reply = await svc.gateway.handle(Cancel(id=next(_ids), order_id="p-1"))
        assert isinstance(reply, OrderReply) and reply.order.status == "canceled"
        held = await status_of(svc, "k-1", "canceled")
        assert "parent" in (held.reject_reason or "")
        assert "k-1" not in venue.by_client


async def test_an_oco_fill_cancels_its_peer_and_a_partial_fill_reduces_it(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        venue.positions["AAPL"] = Decimal(10)
        oco = named(oco_request("AAPL", "sell", 10, take_profit="120", stop_loss="80"), "t", "s")
        take_profit, stop_loss = await submit_list(svc, oco)
        assert (take_profit.status, stop_loss.status) == ("accepted", "accepted")
        venue.fill(at_venue(venue, "t"), Decimal(3))
        # The stop now protects only what is left of the position: 7, by a replace.
        reduced = await status_of(svc, "s.r", "accepted")
        assert (reduced.qty, reduced.replaces) == (Decimal(7), "s")
        venue.fill(at_venue(venue, "t"))
        await status_of(svc, "s.r", "canceled")
        assert (await journal_of(svc, "s")).status == "replaced"


async def test_a_bracket_releases_both_exits_then_one_fill_cancels_the_other(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        bracket = bracket_request(
            "AAPL", "buy", 10, type="limit", limit_price="100", take_profit="110", stop_loss="90"
        )
        entry, tp, sl = await submit_list(svc, named(bracket, "e", "tp", "sl"))
        assert (entry.status, tp.status, sl.status) == ("accepted", "held", "held")
        assert tp.leg is not None and tp.leg.peer_id == "sl"
        venue.fill(at_venue(venue, "e"))
        await status_of(svc, "tp", "accepted")
        await status_of(svc, "sl", "accepted")
        venue.fill(at_venue(venue, "sl"))
        await status_of(svc, "tp", "canceled")


async def test_what_happened_while_down_is_acted_on_after_a_restart(tmp_path: Path) -> None:
    """kill -9 with an OTO and an OCO working; the parent and one exit fill meanwhile."""
    venue = FakeVenue()
    cfg = config(tmp_path)
    venue.positions["AAPL"] = Decimal(10)
    async with running(cfg, venue) as svc:
        await submit_list(svc, named(OTO, "p-1", "k-1"))
        oco = named(oco_request("AAPL", "sell", 10, take_profit="120", stop_loss="80"), "t", "s")
        await submit_list(svc, oco)
    FlakyConnector.mute_stream = True  # nobody listening: as if the service were down
    try:
        venue.fill(at_venue(venue, "p-1"))
        venue.fill(at_venue(venue, "t"))
    finally:
        FlakyConnector.mute_stream = False
    async with running(cfg, venue) as svc:
        child = await status_of(svc, "k-1", "accepted")
        assert child.qty == Decimal(10)
        await status_of(svc, "s", "canceled")
        assert venue.orders[at_venue(venue, "s")].status == "canceled"
        assert "k-1.2" not in venue.by_client


def _filled_oto_parent_and_child(child_status: str, **child: Any) -> tuple[Order, Order]:
    """An emulated OTO's parent ``p-1``, filled (10), and its child ``k-1`` (a sell limit)
    in ``child_status``, as the journal holds them."""
    from tests.durability.harness import order

    link = {"list_id": "l", "contingency": "oto", "emulated": True}
    parent = order(
        "p-1", "filled", oid="1", filled_qty=Decimal(10),
        leg=Leg(role="parent", children=("k-1",), **link),  # type: ignore[arg-type]
    )  # fmt: skip
    kept = order(
        "k-1", child_status, side="sell", type="limit", limit_price=Decimal(120),
        leg=Leg(role="child", parent_id="p-1", **link), **child,  # type: ignore[arg-type]
    )  # fmt: skip
    return parent, kept


async def test_a_release_cut_short_by_a_crash_is_done_at_start(tmp_path: Path) -> None:
    """The journal has the parent filled and its child still held (the crash came between
    the fill and the release): the child goes out once, at start."""
    venue = FakeVenue()
    cfg = config(tmp_path)
    async with running(cfg, venue) as svc:
        store = await svc.journal.get()
        parent, child = _filled_oto_parent_and_child("held")
        venue.orders["1"] = parent
        venue.by_client["p-1"] = "1"
        await store.record(parent)
        await store.record(child)
    async with running(cfg, venue) as svc:
        released = await status_of(svc, "k-1", "accepted")
        assert (released.qty, released.side) == (Decimal(10), "sell")
        assert venue.submits == 1


async def test_a_filled_parent_whose_last_release_a_crash_cut_short_releases_it_at_start(
    tmp_path: Path,
) -> None:
    """The journal has the parent filled (10) and its child out for the first fill only
    (4): the crash came between the parent's last fill and its release. The rest (6)
    goes out once, at start, though the parent itself is no longer open."""
    venue = FakeVenue()
    cfg = config(tmp_path)
    async with running(cfg, venue) as svc:
        store = await svc.journal.get()
        parent, child = _filled_oto_parent_and_child("accepted", oid="2", qty=Decimal(4))
        for o in (parent, child):
            venue.orders[o.id] = o
            venue.by_client[o.client_order_id] = o.id
            await store.record(o)
    async with running(cfg, venue) as svc:
        piece = await status_of(svc, "k-1.2", "accepted")
        assert (piece.qty, piece.side) == (Decimal(6), "sell")
        assert venue.submits == 1 and "k-1.3" not in venue.by_client


async def test_a_crash_between_holding_the_rest_and_sending_the_piece_sends_each_once(
    tmp_path: Path,
) -> None:
    """The journal has the parent filled 4 of 10, its child still held and the child's
    rest (``k-1.2``, 6) held too: the crash came after the rest was journaled, before the
    child went. At start the child goes for 4; the rest waits for the parent's fill."""
    from tests.durability.harness import order

    venue = FakeVenue()
    cfg = config(tmp_path)
    async with running(cfg, venue) as svc:
        store = await svc.journal.get()
        parent, child = _filled_oto_parent_and_child("held")
        # Its own venue id: the venue numbers what it is sent from 1.
        parent = msgspec.structs.replace(
            parent, id="p", status="partially_filled", filled_qty=Decimal(4)
        )
        assert child.leg is not None
        rest = order(
            "k-1.2", "held", qty=Decimal(6), side="sell", type="limit",
            limit_price=Decimal(120), leg=child.leg,
        )  # fmt: skip
        venue.orders["p"] = parent
        venue.by_client["p-1"] = "p"
        for o in (parent, child, rest):
            await store.record(o)
    async with running(cfg, venue) as svc:
        released = await status_of(svc, "k-1", "accepted")
        assert released.qty == Decimal(4)
        assert (await journal_of(svc, "k-1.2")).status == "held"
        venue.fill("p")
        piece = await status_of(svc, "k-1.2", "accepted")
        assert piece.qty == Decimal(6)
        assert venue.submits == 2 and "k-1.3" not in venue.by_client


async def test_health_counts_the_legs_the_service_holds(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path), venue) as svc:
        assert svc.health().emulated_legs == {}
        await submit_list(svc, named(OTO, "p-1", "k-1"))
        assert svc.health().emulated_legs == {"fake": 2}
        await svc.gateway.handle(Cancel(id=next(_ids), order_id="p-1"))
        await status_of(svc, "k-1", "canceled")
        assert svc.health().emulated_legs == {}


async def test_a_leg_of_a_native_list_is_never_sent_alone(tmp_path: Path) -> None:
    """After a crash the journal has a native list's exit the venue does not know by our
    id (Alpaca names exits itself): it is settled, never resubmitted as a lone order."""
    from tests.durability.harness import order

    venue = FakeVenue()
    cfg = config(tmp_path)
    async with running(cfg, venue) as svc:
        store = await svc.journal.get()
        exit_leg = order(
            "x-1", "pending_new", side="sell", type="limit", limit_price=Decimal(120),
            leg=Leg(list_id="l", contingency="bracket", role="take_profit", parent_id="e-1"),
        )  # fmt: skip
        await store.record(exit_leg, event="submit")
    async with running(cfg, venue) as svc:
        settled = await status_of(svc, "x-1", "rejected")
        assert "not found" in (settled.reject_reason or "")
        assert venue.submits == 0
