"""Order lists as TWS carries them: brackets and OTOs by ``parentId``, OCOs by OCA group.

A bracket is its entry followed by its two exits, each a child of the entry;
an OTO is a parent and one child. Every order but the last goes with
``transmit`` off, so TWS sends none of them until the last arrives: IB never
works an entry whose exits it has not got. TWS ties a bracket's exits to each
other itself (a fill of one cancels the other). An OCO is two orders in one
OCA group of type 1: any fill of one cancels the other.
"""

from __future__ import annotations

import msgspec

from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.mapping import to_ib
from ult_actors.brokers.ib.settings import IbSettings
from ult_actors.messages import Leg, OrderListRequest
from ult_actors.validation import leg_roles

#: OCA type 1: cancel the group's other orders on a fill, one routed at a time.
CANCEL_WITH_BLOCK = 1


def list_legs(request: OrderListRequest, list_id: str) -> list[Leg]:
    """Each leg's place in the list, in ``request.legs`` order."""
    coids = [leg.client_order_id for leg in request.legs]
    # A bracket's exits and an OCO's pair cancel each other; every other leg but the
    # first waits for it (an OCO's exits work at once).
    triggered = request.contingency != "oco"
    exits = (1, 2) if request.contingency == "bracket" else (0, 1) if not triggered else ()
    legs = []
    for i, role in enumerate(leg_roles(request.contingency)):
        peer = exits[1 - exits.index(i)] if i in exits else None
        legs.append(
            Leg(
                list_id=list_id,
                contingency=request.contingency,
                role=role,
                parent_id=coids[0] if triggered and i > 0 else None,
                peer_id=coids[peer] if peer is not None else None,
                children=tuple(c for c in coids[1:] if c) if triggered and i == 0 else (),
            )
        )
    return legs


def list_orders(
    request: OrderListRequest,
    list_id: str,
    order_ids: list[int],
    settings: IbSettings,
    account: str,
) -> list[wire.PlaceOrder]:
    """The PLACE_ORDERs of a list under ``order_ids`` (one each, in leg order), last transmitting.

    ``InvalidOrder`` for a leg IB has no such order for: nothing is sent then.
    """
    placed = []
    last = len(request.legs) - 1
    for i, (leg, order_id) in enumerate(zip(request.legs, order_ids, strict=True)):
        contract, order = to_ib(leg, settings, account)
        if request.contingency == "oco":
            order = msgspec.structs.replace(order, oca_group=list_id, oca_type=CANCEL_WITH_BLOCK)
        else:
            order = msgspec.structs.replace(
                order, parent_id=order_ids[0] if i > 0 else 0, transmit=i == last
            )
        placed.append(wire.PlaceOrder(order_id=order_id, contract=contract, order=order))
    return placed
