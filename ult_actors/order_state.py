"""The one order state machine every broker's updates go through.

``pending_new -> accepted -> partially_filled* -> filled | canceled | rejected
| expired``, plus ``pending_cancel`` and ``pending_replace`` from any open
state. A leg of an order list may wait ``held`` before it works. A replace
ends the old order ``replaced`` (final, ``replaced_by`` names the replacement)
or, refused, puts it back where it was (``accepted`` or ``partially_filled``);
a fill that wins the race with the replace is kept either way. Updates arrive from
two sources (the submit reply and the broker's stream) in any order and may
repeat, so merging is idempotent: a repeat is a no-op, an older state than
the one held is stale and ignored, ``filled_qty`` never goes down, and a
terminal state is final. Replacing one terminal state by a different one is
illegal: ``apply_update`` raises ``IllegalTransition`` and the caller logs it
and keeps what it had — never a silent overwrite.

One exception: a final state the service concluded on its own, without the
broker's record of the order (``is_local_verdict``: rejected with no broker
order id, e.g. judged never to have arrived, or a refusal read from an answer
that was not the order; or ``lost``, the broker no longer knowing an order it
had). The broker is the final truth: a later report of that order from the
broker (it carries the broker's order id) replaces it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import msgspec

from ult_actors.errors import AlreadyFinal, NotReplaceable, UltError
from ult_actors.messages import (
    TERMINAL_STATUSES,
    ArrivalSource,
    Fill,
    Leg,
    Order,
    OrderListRequest,
    OrderReply,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Side,
    SubmitOutcome,
)
from ult_actors.validation import leg_roles

# ``Final``s: compiled, C statics, not a look-up in the module's dict per use
# (``TERMINAL_STATUSES`` and ``replace`` come from modules that are not compiled).
_TERMINAL: Final = TERMINAL_STATUSES
_replace: Final = msgspec.structs.replace
_astuple: Final = msgspec.structs.astuple
# The Structs built per order, likewise: a name imported from a module that is not compiled
# is otherwise looked up in this module's dict at each call.
_Order: Final = Order
_Fill: Final = Fill
#: ``OrderRequest``'s fields, in their order: ``order_from_request`` takes them all at once.
_REQUEST_FIELDS: Final = (
    "symbol",
    "side",
    "qty",
    "type",
    "limit_price",
    "stop_price",
    "time_in_force",
    "extended_hours",
    "broker",
    "client_order_id",
    "deadline_ns",
)
#: ``Order``'s fields, in their order: ``order_from_request`` passes them by position.
_ORDER_FIELDS: Final = (
    "id",
    "client_order_id",
    "broker",
    "symbol",
    "side",
    "qty",
    "type",
    "time_in_force",
    "status",
    "limit_price",
    "stop_price",
    "extended_hours",
    "filled_qty",
    "avg_fill_price",
    "created_at",
    "updated_at",
    "reject_reason",
    "outcome",
    "origin",
    "replaces",
    "replaced_by",
    "leg",
    "arrival_price",
    "arrival_source",
)
#: ``Fill``'s first fields, in their order: ``fill_of`` passes them by position.
_FILL_FIELDS: Final = (
    "fill_id",
    "order_id",
    "client_order_id",
    "broker",
    "symbol",
    "side",
    "qty",
    "price",
    "commission",
    "ts",
)
# Checked at import, so a field added or moved fails at once, not as a wrong field later.
# ``OrderUpdate`` and ``OrderReply`` are built by position per order too (the paper venue's
# updates, the broker's published one, the gateway's reply): msgspec matches no keywords.
for _struct, _fields in (
    (OrderRequest, _REQUEST_FIELDS),
    (Order, _ORDER_FIELDS),
    (Fill, _FILL_FIELDS),
    (OrderUpdate, ("order", "fill", "ts")),
    (OrderReply, ("id", "order")),
):
    if _struct.__struct_fields__[: len(_fields)] != _fields:
        raise ImportError(f"{_struct.__name__}'s fields changed: {_struct.__struct_fields__}")
#: Where ``apply_update`` reads an ``Order``'s fields in its ``astuple`` (``_ORDER_FIELDS``).
_ID: Final = 0
_QTY: Final = 5
_STATUS: Final = 8
_FILLED_QTY: Final = 12
if tuple(_ORDER_FIELDS[i] for i in (_ID, _QTY, _STATUS, _FILLED_QTY)) != (
    "id", "qty", "status", "filled_qty",
):  # fmt: skip
    raise ImportError("order_state's field positions do not match _ORDER_FIELDS")
_ZERO: Final = Decimal(0)
# How far along the lifecycle a status is; updates never move an order back.
_RANK: Final = {
    "held": 0,
    "pending_new": 0,
    "accepted": 1,
    "pending_cancel": 2,
    "pending_replace": 2,
    "partially_filled": 2,
    "filled": 3,
    "canceled": 3,
    "rejected": 3,
    "expired": 3,
    "lost": 3,
    "replaced": 3,
}
# A refused cancel or replace puts the order back to working: the one move down in rank.
_PENDING: Final = frozenset({"pending_cancel", "pending_replace"})


def order_from_request(
    request: OrderRequest,
    *,
    broker: str,
    order_id: str,
    status: OrderStatus,
    now_ns: int,
    outcome: SubmitOutcome = "definitive",
    arrival_price: Decimal | None = None,
    arrival_source: ArrivalSource | None = None,
) -> Order:
    """The first state of the order ``request`` asks for: its terms, nothing filled yet
    (and its arrival price, if known: ``ArrivalPrices.arrival``).

    Every place that starts tracking an order (a venue accepting it, a
    connector placing it, the broker actor before the reply) builds it here,
    so they agree on which request fields carry over. ``request`` must have
    its ``client_order_id`` set.
    """
    # Every field in one call (compiled, a field read is an attribute look-up).
    return order_from_fields(
        _astuple(request),
        broker=broker,
        order_id=order_id,
        status=status,
        now_ns=now_ns,
        outcome=outcome,
        arrival_price=arrival_price,
        arrival_source=arrival_source,
    )


def order_from_fields(
    fields: tuple[Any, ...],
    *,
    broker: str,
    order_id: str,
    status: OrderStatus,
    now_ns: int,
    outcome: SubmitOutcome = "definitive",
    arrival_price: Decimal | None = None,
    arrival_source: ArrivalSource | None = None,
    filled_qty: Decimal = _ZERO,
    avg_fill_price: Decimal | None = None,
    updated_at: int | None = None,
) -> Order:
    """``order_from_request`` of the request whose fields (``msgspec.structs.astuple``, in
    ``_REQUEST_FIELDS``' order) are ``fields``; with ``filled_qty``, ``avg_fill_price`` and
    ``updated_at``, the order as it is once that much filled (a venue that fills a new
    order on arrival builds it once, in that state, from the request it has read).
    """
    # The order's fields given by position (``_ORDER_FIELDS``): compiled, keywords are
    # matched to fields one by one (~1k instructions an order built).
    symbol, side, qty, kind, limit, stop, tif, extended, _, client_order_id, _ = fields
    assert client_order_id is not None
    return _Order(
        order_id,
        client_order_id,
        broker,
        symbol,
        side,
        qty,
        kind,
        tif,
        status,
        limit,
        stop,
        extended,
        filled_qty,
        avg_fill_price,
        now_ns,  # created_at
        now_ns if updated_at is None else updated_at,
        None,  # reject_reason
        outcome,
        "client",  # origin
        None,  # replaces
        None,  # replaced_by
        None,  # leg
        arrival_price,
        arrival_source,
    )


def request_of(order: Order) -> OrderRequest:
    """The request that makes ``order`` (to send it again, or a piece of it, by its terms)."""
    return OrderRequest(
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        type=order.type,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        time_in_force=order.time_in_force,
        extended_hours=order.extended_hours,
        broker=order.broker,
        client_order_id=order.client_order_id,
    )


def fill_of(
    order: Order,
    *,
    fill_id: str,
    qty: Decimal,
    price: Decimal,
    ts: int,
    commission: Decimal = Decimal(0),
    side: Side | None = None,
    broker: str | None = None,
) -> Fill:
    """One execution of ``order``: ids, symbol, side and broker from the order.

    ``side`` and ``broker`` are for a venue that reports its own (the side of
    the execution, the name the connection runs under).
    """
    return _Fill(  # by position (``_FILL_FIELDS``): see ``order_from_request``
        fill_id,
        order.id,
        order.client_order_id,
        order.broker if broker is None else broker,
        order.symbol,
        order.side if side is None else side,
        qty,
        price,
        commission,
        ts,
    )


class IllegalTransition(ValueError):
    """An update tried to change a final order state."""


def already_final(order: Order) -> AlreadyFinal:
    """The one answer to a cancel of a final order, for every broker: it names the state."""
    return AlreadyFinal(
        f"order {order.ref} (client order id {order.client_order_id}) is already"
        f" {order.status}; there is nothing to cancel",
        broker=order.broker or None,
    )


#: States in which a replace may be sent: the order works at its broker, nothing pending.
REPLACEABLE_STATUSES: Final = frozenset({"accepted", "partially_filled"})

_WHY_NOT_REPLACEABLE: Final = {
    "pending_new": "its broker has not acknowledged it yet",
    "pending_cancel": "it is being canceled",
    "pending_replace": "another replace of it is pending",
    "held": "it is a leg waiting for its trigger, not working yet",
    "replaced": "it was replaced already",
}


def not_replaceable(order: Order) -> NotReplaceable:
    """The one answer to a replace of an order that cannot take one: it names the state."""
    why = _WHY_NOT_REPLACEABLE.get(order.status, "it is final")
    filled = f", {order.filled_qty} filled" if order.filled_qty else ""
    return NotReplaceable(
        f"order {order.ref} (client order id {order.client_order_id}) is {order.status}"
        f"{filled}; it cannot be replaced ({why})",
        broker=order.broker or None,
    )


def refused(order: Order, error: UltError, now_ns: int) -> Order:
    """``order``'s final record once its broker refused it (or it never got there)."""
    return _replace(
        order,
        status="rejected",
        reject_reason=f"{error.code}: {error.message}",
        outcome="definitive",
        updated_at=now_ns,
    )


def is_local_verdict(order: Order) -> bool:
    """Whether ``order``'s final state is the service's own conclusion, not the broker's record.

    Such an order was never acknowledged with a broker order id, or its
    broker no longer knew it (``lost``); a later broker report of it wins
    (see the module docstring).
    """
    return _is_local_verdict(order.status, order.id)


def _is_local_verdict(status: str, order_id: str) -> bool:
    return status == "lost" or (status == "rejected" and not order_id)


def apply_update(current: Order | None, new: Order) -> Order:
    """Merge ``new`` into ``current``; returns ``current`` itself when nothing changed."""
    if current is None:
        return new
    # Both orders' fields in one call each, read by position (``_ORDER_FIELDS``): compiled,
    # a field read is an attribute look-up (~110 instructions), and a merge reads ~20.
    had_fields, new_fields = _astuple(current), _astuple(new)
    was, now = had_fields[_STATUS], new_fields[_STATUS]
    had, has = had_fields[_FILLED_QTY], new_fields[_FILLED_QTY]
    if _is_local_verdict(was, had_fields[_ID]) and new_fields[_ID] and now != "lost":
        # The broker's record of an order we had given up on: it wins over our guess.
        return _replace(
            new,
            created_at=current.created_at,
            outcome="definitive",
            arrival_price=current.arrival_price,
            arrival_source=current.arrival_source,
        )
    if was in _TERMINAL:
        if now in _TERMINAL and now != was:
            raise IllegalTransition(f"order {current.client_order_id}: {was} is final, got {now}")
        if has > had and now == was:
            return _merge(had_fields, new_fields, was, True, has)
        return current
    # The two quantities compared once each way (``Decimal`` comparisons, each fetching the
    # decimal context), then handed to ``_merge``: ``max(had, has)`` is ``has`` only when
    # it is greater (on a tie, ``had``: the same object as before).
    fewer = has < had
    more = not fewer and has > had
    filled = has if more else had
    if fewer and now not in _TERMINAL:
        return current  # stale: an older report of fewer fills
    # A new order's record (``pending_new``, the lowest rank) moves back from no status.
    if was != "pending_new" and _RANK[now] < _RANK[was] and not (
        was in _PENDING and now == "accepted"  # cancel / replace refused
    ):
        if filled == had:
            return current  # stale
        status: OrderStatus = "partially_filled"
    else:
        status = now
    if status in _PENDING and filled > had:
        status = "partially_filled" if filled < had_fields[_QTY] else "filled"
    elif status == "accepted" and was in _PENDING and filled > 0:
        status = "partially_filled"  # back to what it was: it had fills
    merged = _merge(had_fields, new_fields, status, not fewer, filled)
    if status != was:
        return merged  # changed for sure: no field-by-field comparison
    return current if merged == current else merged


def _merge(
    current: tuple[Any, ...],
    new: tuple[Any, ...],
    status: OrderStatus,
    at_least: bool,
    filled: Decimal,
) -> Order:
    """The merged state of two orders' fields (``msgspec.structs.astuple``), built by
    position: ``replace`` would match ten keywords to fields one by one. ``at_least``:
    whether ``new``'s filled quantity is at least ``current``'s; ``filled``: the greater
    of the two (``current``'s on a tie)."""
    (
        id_, client_order_id, broker, symbol, side, qty, kind, time_in_force, _,
        limit_price, stop_price, extended_hours, _, avg, created_at, updated_at,
        reject_reason, outcome, origin, replaces, replaced_by, leg, arrival_price,
        arrival_source,
    ) = current  # fmt: skip
    (
        new_id, _, _, _, _, _, _, _, _, _, _, _, _, new_avg, _, new_updated_at,
        new_reject_reason, new_outcome, _, new_replaces, new_replaced_by, new_leg, _, _,
    ) = new  # fmt: skip
    # Typed: compiled, the two times compare as machine integers and the outcome as a
    # ``str``, not through the generic comparison.
    was_updated: int = updated_at
    now_updated: int = new_updated_at
    outcome_now: str = new_outcome
    return _Order(
        new_id or id_,
        client_order_id,
        broker,
        symbol,
        side,
        qty,
        kind,
        time_in_force,
        status,
        limit_price,
        stop_price,
        extended_hours,
        filled,  # filled_qty: max(had, has)
        (new_avg if at_least else avg) or avg,  # avg_fill_price
        created_at,
        max(was_updated, now_updated),
        new_reject_reason or reject_reason,
        "definitive" if outcome_now == "definitive" else outcome,
        origin,
        replaces or new_replaces,
        new_replaced_by or replaced_by,
        leg or new_leg,
        arrival_price,
        arrival_source,
    )


def leg_records(
    request: OrderListRequest, broker: str, now_ns: int, *, emulated: bool
) -> list[Order]:
    """The journal's first record of each leg, linked: role, parent, OCO peer."""
    coids = [str(leg.client_order_id) for leg in request.legs]
    assert request.list_id is not None and all(leg.client_order_id for leg in request.legs)
    roles = leg_roles(request.contingency)
    triggered = request.contingency in ("bracket", "oto")
    exits = {"bracket": (1, 2), "oco": (0, 1)}.get(request.contingency)
    records = []
    for i, (leg, role) in enumerate(zip(request.legs, roles, strict=True)):
        parent_id = coids[0] if triggered and i > 0 else None
        peer_id = None
        if exits is not None and i in exits:
            peer_id = coids[exits[1] if i == exits[0] else exits[0]]
        held = parent_id is not None and emulated
        order = order_from_request(
            leg,
            broker=broker,
            order_id="",
            status="held" if held else "pending_new",
            now_ns=now_ns,
            outcome="local" if held else "unknown",
        )
        link = Leg(
            list_id=request.list_id,
            contingency=request.contingency,
            role=role,
            parent_id=parent_id,
            peer_id=peer_id,
            children=tuple(coids[1:]) if triggered and i == 0 else (),
            emulated=emulated,
        )
        records.append(_replace(order, leg=link))
    return records
