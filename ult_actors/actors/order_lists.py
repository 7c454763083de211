"""Order lists at the broker: sent as the venue's own list, or held by the service.

**Native** (the connector's ``native_contingencies``): every leg is journaled
before anything leaves, then the venue gets the whole list in one request;
legs it holds until triggered are ``held`` there. A lost answer or a list
asked again is looked up by its first leg's client order id before anything
is sent again, as for a submit.

**Emulated** (a venue without such lists, e.g. OCO and OTO at OANDA): the
service holds the contingency, journaled as ``held`` legs and ``Leg`` links,
and acts on the updates of the legs (``react``):

- a parent (an OTO's parent, a bracket's entry) that fills releases its
  children sized to what filled: the first release sends the held leg itself,
  each later fill one more piece (``<child id>.2``, ``.3`` ...), so partial
  fills release partial children. While the parent may fill more, the next
  piece is journaled ``held`` (sized to what the parent has left) before a
  piece goes out: a release a crash drops is owed by an open leg, which
  ``resume`` finds even when the child and every piece before it have ended.
  A parent that ends cancels what is still held (all of it if nothing filled);
- one exit of an OCO pair (a bracket's exits are one) that fills cancels its
  peer, or, filled in part, reduces the peer to what is still left of it
  (a replace where the venue has one, each reduction under its own id
  ``<peer>.r``, ``.r2`` ..., else a cancel);
- after a restart ``resume`` runs the same rules over the journal's open legs,
  so what happened while the service was down is acted on once; the broker
  actor also runs it now and then while legs are open, so a reaction the venue
  refused for a moment (a peer's cancel met by a 503) is tried again.

Every order goes out through the broker actor's exactly-once submit, so a
release or a peer cancel done twice (a redelivery, a resume) is done once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import msgspec
import trio

from ult_actors.actors.commands import ReplaceOrder
from ult_actors.actors.replacing import ReplaceSide
from ult_actors.brokers.base import Connector, SupportsOrderLists, SupportsReplace
from ult_actors.errors import InsufficientFunds, InvalidOrder, NotFound, UltError
from ult_actors.messages import (
    TERMINAL_STATUSES,
    Contingency,
    Leg,
    Order,
    OrderListRequest,
    OrderRequest,
    ReplaceRequest,
)
from ult_actors.order_state import leg_records, order_from_request, refused, request_of
from ult_actors.validation import replaced_terms

#: Answers to a list that say the venue refused it: nothing was placed.
_REFUSALS = (InvalidOrder, InsufficientFunds, NotFound)


@dataclass
class ListSide(ReplaceSide):
    """What order lists need of their broker actor incarnation, beyond a replace's."""

    #: The exactly-once submit of one order (``leg`` kept on its records).
    place: Callable[[OrderRequest, Leg | None], Awaitable[Order]]
    cancel: Callable[[str], Awaitable[Order]]
    replace: Callable[[ReplaceOrder], Awaitable[Order]]
    #: Held while an emulated list changes (a release, a peer's cancel): one at a time.
    lock: trio.Lock


def is_native(connector: Connector, contingency: Contingency) -> bool:
    """Whether the venue carries this contingency itself."""
    return (
        isinstance(connector, SupportsOrderLists) and contingency in connector.native_contingencies
    )


async def place_list(side: ListSide, request: OrderListRequest) -> list[Order]:
    """Send ``request`` natively where the venue can, else hold it here; every leg back."""
    if is_native(side.connector, request.contingency):
        return await _place_native(side, request)
    return await _place_emulated(side, request)


async def _place_native(side: ListSide, request: OrderListRequest) -> list[Order]:
    connector = side.connector
    assert isinstance(connector, SupportsOrderLists)
    records = leg_records(request, side.name, side.now_ns(), emulated=False)
    first = records[0].client_order_id
    journaled = await side.store.get(first)
    if journaled is not None:
        # Asked again (a retry, a redelivery after a crash): it may be at the venue.
        found = await side.lookup(first)
        if found is None and journaled.status == "pending_new":
            await trio.sleep(side.settle_grace_s)  # sent moments ago: it may still land
            found = await side.lookup(first)
        if found is not None:
            return await _merge_found(side, records)
        # Read again: reconciliation may have ruled on it while we looked.
        journaled = await side.known(first) or journaled
        if journaled.status != "pending_new":
            return [await side.known(r.client_order_id) or r for r in records]
    else:
        for record in records:
            await side.store.record(record, event="submit")  # durable before it leaves
    try:
        legs = await connector.submit_list(request)
    except _REFUSALS as exc:
        await _refuse_all(side, records, exc)
        raise
    except UltError as exc:
        await trio.sleep(side.settle_grace_s)
        if await side.lookup(first) is None:
            await _refuse_all(side, records, exc)
            raise
        return await _merge_found(side, records)
    return [
        await side.track(
            msgspec.structs.replace(leg, outcome="definitive", leg=leg.leg or record.leg)
        )
        for leg, record in zip(legs, records, strict=True)
    ]


async def _merge_found(side: ListSide, records: list[Order]) -> list[Order]:
    """The venue has the list: each leg as the venue has it (or as journaled)."""
    result = []
    for record in records:
        found = await side.lookup(record.client_order_id)
        if found is None:
            result.append(await side.known(record.client_order_id) or record)
        else:
            found = msgspec.structs.replace(
                found, outcome="definitive", leg=found.leg or record.leg
            )
            result.append(await side.track(found))
    return result


async def _refuse_all(side: ListSide, records: list[Order], exc: UltError) -> None:
    for record in records:
        current = await side.known(record.client_order_id) or record
        if current.status in ("pending_new", "held"):
            await side.track(refused(current, exc, side.now_ns()))


async def _place_emulated(side: ListSide, request: OrderListRequest) -> list[Order]:
    records = leg_records(request, side.name, side.now_ns(), emulated=True)
    # Held legs first: once a parent is out, its children must already be on record.
    for record in records:
        if record.status == "held" and await side.store.get(record.client_order_id) is None:
            await side.store.record(record, event="held")
    result = []
    for record, leg in zip(records, request.legs, strict=True):
        if record.status == "held":
            result.append(await side.known(record.client_order_id) or record)
        else:
            result.append(await side.place(leg, record.leg))
    async with side.lock:  # beside the reactions to the legs' first updates
        for order in result:
            if order.leg is not None and order.status not in ("held", "pending_new"):
                await react(side, order)  # it may have filled inside the submit
    return result


async def react(side: ListSide, order: Order) -> None:
    """Act on a change of an emulated leg: release children, cancel or reduce the peer."""
    leg = order.leg
    if leg is None or not leg.emulated:
        return
    if leg.role in ("entry", "parent"):
        await _release_children(side, order)
    if leg.peer_id is not None and order.filled_qty > 0 and order.status != "held":
        await _reduce_peer(side, order, leg.peer_id)


async def resume(side: ListSide, open_orders: list[Order]) -> None:
    """After a restart: apply the rules to every open emulated leg and its parent."""
    for order in open_orders:
        leg = order.leg
        if leg is None or not leg.emulated:
            continue
        if leg.parent_id is not None:
            # Also for a child already out: its parent may have filled more, the release
            # cut short by a crash, and a parent that filled is not open to be resumed.
            parent = await side.known(leg.parent_id)
            if parent is not None:
                await react(side, parent)
            if order.status == "held":
                continue
        await react(side, order)
        if leg.peer_id is not None:
            peer = await _current(side, leg.peer_id)
            if peer is not None and peer.filled_qty > 0:
                await react(side, peer)


async def _release_children(side: ListSide, parent: Order) -> None:
    leg = parent.leg
    assert leg is not None
    children = [
        o
        for o in [await side.known(c) for c in leg.children]
        if o is not None and o.leg is not None and o.leg.parent_id == parent.client_order_id
    ]
    ended = parent.status in TERMINAL_STATUSES
    if parent.filled_qty == 0 and not ended:
        return  # nothing to release yet
    for child in children:
        pieces = await _pieces(side, child)
        # Sent in turn: the first held piece is the next to go, the rest of it on record.
        next_piece = next((i for i, p in enumerate(pieces) if p.status == "held"), len(pieces))
        want = parent.filled_qty - sum((p.qty for p in pieces[:next_piece]), Decimal(0))
        if want > 0:  # a child is sized to what its parent filled
            if not ended:
                # The rest is on record, held, before this piece goes: a crash that drops
                # the release of the parent's next fill leaves an open leg for ``resume``.
                await _hold_rest(side, parent, child, next_piece + 1)
            await side.place(_piece(child, next_piece, want), _piece_leg(child, next_piece))
            next_piece += 1
        if ended:
            for held in pieces[next_piece:]:  # nothing more will fill: nothing to release
                if held.status == "held":
                    await side.track(_canceled(held, _ended_reason(parent), side.now_ns()))


async def _pieces(side: ListSide, child: Order) -> list[Order]:
    """``child`` and the pieces on record after it (``<child>.2``, ``.3`` ...), in turn."""
    pieces = [child]
    while (piece := await side.known(_piece_id(child, len(pieces)))) is not None:
        pieces.append(piece)
    return pieces


def _piece_id(child: Order, index: int) -> str:
    """The client order id of ``child``'s piece ``index`` (0: the child itself)."""
    return child.client_order_id if index == 0 else f"{child.client_order_id}.{index + 1}"


def _piece_leg(child: Order, index: int) -> Leg:
    """A piece's leg: its peer is the piece of the same number of the child's peer."""
    assert child.leg is not None
    peer = child.leg.peer_id
    if peer is None or index == 0:
        return child.leg
    return msgspec.structs.replace(child.leg, peer_id=f"{peer}.{index + 1}")


def _piece(child: Order, index: int, qty: Decimal) -> OrderRequest:
    return msgspec.structs.replace(
        request_of(child), qty=qty, client_order_id=_piece_id(child, index)
    )


async def _hold_rest(side: ListSide, parent: Order, child: Order, index: int) -> None:
    """Journal piece ``index`` of ``child`` as held, sized to what the parent may still fill."""
    coid = _piece_id(child, index)
    rest = parent.qty - parent.filled_qty
    if rest <= 0 or await side.known(coid) is not None:
        return
    held = order_from_request(
        _piece(child, index, rest),
        broker=child.broker,
        order_id="",
        status="held",
        now_ns=side.now_ns(),
        outcome="local",
    )
    await side.store.record(
        msgspec.structs.replace(held, leg=_piece_leg(child, index)), event="held"
    )


def _ended_reason(parent: Order) -> str:
    if parent.filled_qty == 0:
        return "its parent ended unfilled"
    return f"its parent ended: all it filled ({parent.filled_qty}) was released"


async def _current(side: ListSide, coid: str) -> Order | None:
    """An order by client order id, following replaces to the one that carries on."""
    order = await side.known(coid)
    while order is not None and order.status == "replaced" and order.replaced_by:
        order = await side.known(order.replaced_by)
    return order


async def _reduce_peer(side: ListSide, order: Order, peer_id: str) -> None:
    peer = await _current(side, peer_id)
    if peer is None or peer.status in TERMINAL_STATUSES or peer.status == "held":
        return
    mine_left = order.qty - order.filled_qty if order.status not in TERMINAL_STATUSES else 0
    peer_left = peer.qty - peer.filled_qty
    try:
        if mine_left <= 0:
            await side.cancel(peer.id or peer.client_order_id)
        elif peer_left > mine_left:
            if not isinstance(side.connector, SupportsReplace):
                await side.cancel(peer.id or peer.client_order_id)
                return
            change = ReplaceRequest(
                order_id=peer.client_order_id,
                qty=peer.filled_qty + mine_left,
                client_order_id=await _reduction_id(side, peer),
            )
            await side.replace(
                ReplaceOrder(order=peer, change=change, terms=replaced_terms(peer, change))
            )
    except UltError:
        # Filled or canceled meanwhile: its own update comes and settles the pair. Refused
        # for now (a 503): the broker actor's sweep of open legs tries again.
        return


async def _reduction_id(side: ListSide, peer: Order) -> str:
    """The client order id of the next reduction of ``peer``: ``<peer>.r``, ``.r2``, ``.r3`` ...

    The first id not used by a reduction the venue never took (``rejected``): one in
    flight or done keeps its id, so asking again is a retry of it; one refused leaves
    the next reduction to a new id instead of standing in for it.
    """
    count = 1
    while True:
        coid = f"{peer.client_order_id}.r{count if count > 1 else ''}"
        earlier = await side.known(coid)
        if earlier is None or earlier.status != "rejected":
            return coid
        count += 1


def _canceled(order: Order, reason: str, now_ns: int) -> Order:
    return msgspec.structs.replace(
        order, status="canceled", reject_reason=reason, outcome="definitive", updated_at=now_ns
    )
