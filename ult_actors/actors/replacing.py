"""A replace at the broker, exactly once: the broker actor's side of ``ReplaceOrder``.

The replacement is a new order in the journal under its own client order id
(the replace's idempotency key), linked both ways with the order it replaces.
Before anything leaves, one journal write records the replacement
(``pending_new``, ``replaces`` set) and the old order ``pending_replace``. Then:

- the venue **takes it**: the replacement is merged in as the venue reports it
  and the old order ends ``replaced`` (``replaced_by`` set);
- the venue **refuses it** (filled meanwhile, being canceled, bad terms): the
  replacement ends ``rejected`` and the old order goes back to what the venue
  says it is (fills that won the race included); the caller gets the refusal;
- the answer is **lost**: the replacement is looked up by its client order id
  before anything is sent again, as for a submit; a replace redelivered after
  a crash does the same, so it is applied at most once. Not found, it was not
  taken; but where the venue may hold a change unanswered and apply it later
  (a connector with ``holds_changes``: TWS while it has lost IB), or when it
  cannot be asked, it is still unknown: the caller is told so, both orders
  stay in flight, and reconciliation settles them (a replacement never found
  is never sent again as a new order; one found later ends the old).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import trio

from ult_actors.actors.commands import ReplaceOrder
from ult_actors.brokers.base import Connector, SupportsReplace
from ult_actors.cluster.fencing import LeaseExpired
from ult_actors.errors import (
    BrokerUnavailable,
    InvalidOrder,
    NotFound,
    NotReplaceable,
    UltError,
)
from ult_actors.journal import OrderStore
from ult_actors.messages import Order
from ult_actors.order_state import (
    REPLACEABLE_STATUSES,
    not_replaceable,
    order_from_request,
    refused,
)

#: Answers that say the venue did not take the replace: nothing changed there.
_REFUSALS = (NotReplaceable, InvalidOrder, NotFound)


@dataclass
class ReplaceSide:
    """What a replace needs of its broker actor incarnation."""

    name: str
    connector: Connector
    store: OrderStore
    #: Our latest state of one of this broker's orders, by client order id.
    known: Callable[[str], Awaitable[Order | None]]
    #: Merge a report into our view; journal and publish it if it changed.
    track: Callable[[Order], Awaitable[Order]]
    #: The venue's view of an order by client order id, retried; ``None``: not there.
    lookup: Callable[[str], Awaitable[Order | None]]
    now_ns: Callable[[], int]
    #: How long a lost answer is waited for before the replacement is looked up.
    settle_grace_s: float


async def replace_order(side: ReplaceSide, msg: ReplaceOrder) -> Order:
    """Apply ``msg`` at the venue at most once; returns the replacement as it stands."""
    connector = side.connector
    if not isinstance(connector, SupportsReplace):
        raise NotReplaceable(
            f"broker {side.name} cannot replace orders; cancel and submit anew",
            broker=side.name,
        )
    new_coid = msg.terms.client_order_id
    assert new_coid is not None
    old = await side.known(msg.order.client_order_id) or msg.order
    recorded = await side.store.get(new_coid)
    if recorded is not None:
        # Asked again (a retry, or redelivered after a crash): it may have been applied.
        found = await side.lookup(new_coid)
        if found is not None:
            return await _took_effect(side, old, found)
        if recorded.status != "pending_new":
            return recorded  # settled already (refused, or never arrived)
    elif old.status not in REPLACEABLE_STATUSES:
        raise not_replaceable(old)
    else:
        await _record_intent(side, old, msg)
    try:
        new = await connector.replace(old, msg.change)
    except LeaseExpired:
        raise  # not sent, never to be from here: the new active reconciles the intent
    except _REFUSALS as exc:
        await _not_taken(side, old, new_coid, exc)
        raise
    except UltError as exc:
        # The venue may or may not have taken it: find out before saying anything.
        await trio.sleep(side.settle_grace_s)
        try:
            found = await side.lookup(new_coid)
        except UltError:
            raise _unknown(side, old, new_coid) from exc
        if found is not None:
            return await _took_effect(side, old, found)
        if isinstance(exc, BrokerUnavailable) and getattr(connector, "holds_changes", False):
            # Unanswered and not there (yet) is no refusal where the venue may hold a
            # change and apply it later (TWS while it has lost IB): reconciliation settles.
            raise _unknown(side, old, new_coid) from exc
        await _not_taken(side, old, new_coid, exc)
        raise
    return await _took_effect(side, old, new)


def _unknown(side: ReplaceSide, old: Order, new_coid: str) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"broker {side.name} did not answer the replace of order"
        f" {old.client_order_id}; whether replacement {new_coid} took effect is"
        f" unknown until reconciled (check: ult order {new_coid})",
        broker=side.name,
    )


async def _record_intent(side: ReplaceSide, old: Order, msg: ReplaceOrder) -> None:
    """Journal the replacement and the old order's ``pending_replace`` before anything leaves."""
    now = side.now_ns()
    replacement = msgspec.structs.replace(
        order_from_request(
            msgspec.structs.replace(msg.terms, qty=msg.terms.qty - old.filled_qty),
            broker=side.name,
            order_id="",
            status="pending_new",
            now_ns=now,
            outcome="unknown",
        ),
        replaces=old.client_order_id,
        leg=old.leg,
    )
    await side.store.record(replacement, event="replace")
    await side.track(msgspec.structs.replace(old, status="pending_replace", updated_at=now))


async def _took_effect(side: ReplaceSide, old: Order, new: Order) -> Order:
    """The venue has the replacement: merge it in and end the old order ``replaced``."""
    replacement = await side.track(
        msgspec.structs.replace(
            new, replaces=old.client_order_id, leg=new.leg or old.leg, outcome="definitive"
        )
    )
    current = await side.known(old.client_order_id) or old
    if current.status != "replaced":
        await side.track(
            msgspec.structs.replace(
                current,
                status="replaced",
                replaced_by=replacement.client_order_id,
                updated_at=side.now_ns(),
            )
        )
    return replacement


async def _not_taken(side: ReplaceSide, old: Order, new_coid: str, exc: UltError) -> None:
    """The venue did not take it: the replacement is rejected, the old order as it is there."""
    recorded = await side.store.get(new_coid)
    if recorded is not None and recorded.status == "pending_new":
        await side.track(refused(recorded, exc, side.now_ns()))
    try:
        there = await side.lookup(old.client_order_id)
    except UltError:
        there = None
    if there is not None:
        await side.track(there)
        return
    current = await side.known(old.client_order_id) or old
    if current.status == "pending_replace":
        # The venue could not be asked: back to working as we last knew it.
        back = "partially_filled" if current.filled_qty else "accepted"
        await side.track(msgspec.structs.replace(current, status=back, updated_at=side.now_ns()))
