"""Our order lists as Alpaca's order classes, and Alpaca's legs back as our legs.

Alpaca carries all three natively, as one order with ``order_class`` and its
exits in ``take_profit`` / ``stop_loss``:

- ``bracket`` [entry, take_profit, stop_loss]: the entry with both exits;
- ``oto`` [parent, child]: the parent with one exit (a limit child is a
  ``take_profit``, a stop or stop-limit child a ``stop_loss``);
- ``oco`` [take_profit, stop_loss]: the take-profit limit is the order
  itself, the stop-loss its one leg.

The exits are whatever Alpaca can express: the entry's symbol and quantity,
the other side (an oco's two legs share a side), and the entry's time in
force -- except that a market entry takes its exits' (a market order fills
or waits for the open alike under ``day`` and ``gtc``). Anything else is
``InvalidOrder`` before a request is sent. Alpaca gives the exit legs client
order ids of its own; ``legs_of`` pairs them back with ours, and
``nesting_order`` / ``nested_role`` find a leg again when that reply was lost.
"""

from __future__ import annotations

from typing import Any

from ult_actors.brokers.alpaca.mapping import decimal_text, order_body
from ult_actors.brokers.alpaca.wire import WireOrder
from ult_actors.errors import InvalidOrder
from ult_actors.messages import Contingency, Leg, LegRole, OrderListRequest, OrderRequest

#: Each contingency's roles, in the order of ``OrderListRequest.legs``.
ROLES: dict[str, tuple[LegRole, ...]] = {
    "bracket": ("entry", "take_profit", "stop_loss"),
    "oco": ("take_profit", "stop_loss"),
    "oto": ("parent", "child"),
}


def list_body(request: OrderListRequest) -> dict[str, Any]:
    """The ``POST /v2/orders`` body for an order list; ``InvalidOrder`` if Alpaca cannot carry it."""
    roles = ROLES[request.contingency]
    if len(request.legs) != len(roles):
        raise InvalidOrder(
            f"a {request.contingency} has {len(roles)} legs ({', '.join(roles)}),"
            f" not {len(request.legs)}"
        )
    if request.contingency == "oco":
        take_profit, stop_loss = request.legs
        _check_exit(take_profit, "take_profit", like=stop_loss, side=stop_loss.side)
        _check_exit(
            stop_loss,
            "stop_loss",
            like=take_profit,
            side=take_profit.side,
            time_in_force=take_profit.time_in_force,
        )
        body = order_body(take_profit)
        body.update(_exits(take_profit, stop_loss))
    else:
        entry, *exits = request.legs
        tifs = {leg.time_in_force for leg in exits}
        tif = tifs.pop() if entry.type == "market" and len(tifs) == 1 else entry.time_in_force
        if tif not in ("day", "gtc"):
            raise InvalidOrder(
                f"Alpaca works a {request.contingency} for day or gtc, not {tif}",
                field="time_in_force",
            )
        other = "sell" if entry.side == "buy" else "buy"
        for leg, role in zip(exits, roles[1:], strict=True):
            _check_exit(leg, role, like=entry, side=other, time_in_force=tif)
        body = order_body(entry)
        body["time_in_force"] = tif
        if request.contingency == "bracket":
            body.update(_exits(exits[0], exits[1]))
        elif exits[0].type == "limit":
            body.update(_exits(exits[0], None))
        else:
            body.update(_exits(None, exits[0]))
    body["order_class"] = request.contingency
    return body


def legs_of(request: OrderListRequest, wire: WireOrder) -> list[tuple[WireOrder, Leg]]:
    """Alpaca's orders for ``request`` (the reply and its nested legs), in ``request.legs`` order."""
    assert request.list_id is not None
    roles = ROLES[request.contingency]
    trigger = request.legs[0].client_order_id if request.contingency != "oco" else None
    by_role: dict[LegRole, WireOrder] = {roles[0]: wire}
    for child in wire.legs or ():
        by_role[nested_role(request.contingency, child)] = child
    missing = [role for role in roles if role not in by_role]
    if missing:
        raise InvalidOrder(f"Alpaca's reply has no {', '.join(missing)} leg")
    return [
        (
            by_role[role],
            Leg(
                list_id=request.list_id,
                contingency=request.contingency,
                role=role,
                parent_id=trigger if role != roles[0] else None,
            ),
        )
        for role in roles
    ]


def nested_role(contingency: Contingency, child: WireOrder) -> LegRole:
    """The role of one of Alpaca's nested legs: an exit's type tells a bracket's two apart."""
    if contingency == "oco":
        return "stop_loss"
    if contingency == "oto":
        return "child"
    return "take_profit" if (child.type or child.order_type) == "limit" else "stop_loss"


def nesting_order(leg: Leg) -> str | None:
    """Our client order id of the order Alpaca nests ``leg`` under; ``None`` for that order.

    A bracket's or an OTO's exits come under their entry (``parent_id``), an
    OCO's stop-loss under its take-profit (its ``peer_id``).
    """
    if leg.role == ROLES[leg.contingency][0]:
        return None
    return leg.parent_id or leg.peer_id


_EXIT_TYPES = {
    "take_profit": ("limit",),
    "stop_loss": ("stop", "stop_limit"),
    "child": ("limit", "stop", "stop_limit"),
}


def _check_exit(
    leg: OrderRequest,
    role: str,
    *,
    like: OrderRequest,
    side: str,
    time_in_force: str | None = None,
) -> None:
    """Refuse an exit Alpaca cannot express as ``take_profit`` / ``stop_loss`` of ``like``."""
    kinds = _EXIT_TYPES[role]
    problem = None
    if leg.type not in kinds:
        problem = f"is {leg.type}; Alpaca takes {' or '.join(kinds)} here"
    elif leg.symbol != like.symbol:
        problem = f"is for {leg.symbol}, the list for {like.symbol}"
    elif leg.qty != like.qty:
        problem = f"is for {leg.qty}; Alpaca sizes it as the rest of the list ({like.qty})"
    elif leg.side != side:
        problem = f"is a {leg.side}; Alpaca makes it a {side}"
    elif time_in_force is not None and leg.time_in_force != time_in_force:
        problem = f"is {leg.time_in_force}; Alpaca works it {time_in_force}, as its entry"
    elif leg.extended_hours:
        problem = "asks for extended hours, which Alpaca's order classes do not take"
    if problem is not None:
        raise InvalidOrder(f"the {role} leg ({leg.client_order_id}) {problem}")


def _exits(take_profit: OrderRequest | None, stop_loss: OrderRequest | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if take_profit is not None:
        assert take_profit.limit_price is not None
        body["take_profit"] = {"limit_price": decimal_text(take_profit.limit_price)}
    if stop_loss is not None:
        assert stop_loss.stop_price is not None
        body["stop_loss"] = {"stop_price": decimal_text(stop_loss.stop_price)}
        if stop_loss.limit_price is not None:
            body["stop_loss"]["limit_price"] = decimal_text(stop_loss.limit_price)
    return body
