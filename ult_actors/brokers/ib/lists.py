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
    roles = leg_roles(request.contingency)
    head = request.legs[0].client_order_id
    return [
        Leg(
            list_id=list_id,
            contingency=request.contingency,
            role=role,
            # An OCO's exits work at once; every other leg but the first waits for it.
            parent_id=head if i > 0 and request.contingency != "oco" else None,
        )
        for i, role in enumerate(roles)
    ]


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
