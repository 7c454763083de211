"""Resolving what a person or client names: an order by an id they typed, a broker by name.

An id may be a client order id, a broker order id, or a reference
``broker:id`` (what the service shows). Broker order ids are unique only
within one broker connection, so a bare one may match orders at several
brokers: such a lookup is refused with every candidate listed, never
resolved by picking one.
"""

from __future__ import annotations

from collections.abc import Collection

from ult_actors.errors import AmbiguousOrderId, NotFound
from ult_actors.journal import OrderStore
from ult_actors.messages import Order


async def find_order(store: OrderStore, order_ref: str) -> Order:
    """The one order ``order_ref`` names; ``NotFound`` or ``AmbiguousOrderId`` otherwise."""
    candidates: dict[str, Order] = {}
    by_client_id = await store.get(order_ref)
    if by_client_id is not None:
        candidates[by_client_id.client_order_id] = by_client_id
    for order in await store.find_by_order_id(order_ref):
        candidates.setdefault(order.client_order_id, order)
    broker, sep, raw_id = order_ref.partition(":")
    if sep:
        for order in await store.find_by_order_id(raw_id):
            if order.broker == broker:
                candidates.setdefault(order.client_order_id, order)
    if not candidates:
        raise NotFound(f"no order with id, broker:id or client order id {order_ref!r}")
    if len(candidates) > 1:
        listed = ", ".join(
            f"{o.ref} (client order id {o.client_order_id})"
            for o in sorted(candidates.values(), key=lambda o: o.ref)
        )
        raise AmbiguousOrderId(
            f"{order_ref!r} matches {len(candidates)} orders: {listed};"
            " give broker:id or the client order id",
            field="order_id",
        )
    return next(iter(candidates.values()))


def known_broker(name: str, configured: Collection[str]) -> str:
    """``name`` if it is a configured broker connection, else ``NotFound`` naming the choices.

    Every command that takes a broker refuses an unknown one with this same error.
    """
    if name not in configured:  # per order (the router): the choices sorted only to refuse
        choices = ", ".join(sorted(configured))
        raise NotFound(f"unknown broker {name!r} (configured: {choices})", field="broker")
    return name
