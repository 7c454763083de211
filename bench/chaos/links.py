"""The chaos run's checks of replaces and order lists: links kept, no leg working after its peer filled.

Both read a book of orders by client order id: the journal's, or the one
read back from the brokers (``chains`` always follows the journal's replace
links, since a connector built fresh for the check may not know them).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from ult_actors.messages import OPEN_STATUSES, Order


def never_sent(order: Order) -> bool:
    """A leg no venue made: held by the service, or ended before it was sent or made.

    An emulated child whose parent ended unfilled is canceled here; an OANDA bracket's
    exits are made only when the entry opens a trade, and end canceled when its fill
    only reduced one.
    """
    return order.status == "held" or (
        order.leg is not None and not order.id and order.status == "canceled"
    )


def chain(journal: Mapping[str, Order], coid: str) -> list[str]:
    """``coid`` and every order that replaced it in turn, oldest first."""
    out = [coid]
    seen = {coid}
    order = journal.get(coid)
    while order is not None and order.status == "replaced" and order.replaced_by:
        if order.replaced_by in seen:
            break
        out.append(order.replaced_by)
        seen.add(order.replaced_by)
        order = journal.get(order.replaced_by)
    return out


def broken_replace_links(
    journal: Mapping[str, Order], broker: Mapping[str, Order], answered: Mapping[str, Order]
) -> list[str]:
    """Orders ``replaced`` in the journal whose replacement is missing, unlinked, or not at the
    broker; and replacements a client was given whose old order the journal does not end."""
    broken = []
    for coid, answer in answered.items():
        old = journal.get(answer.replaces or "")
        if (
            answer.replaces
            and answer.status != "rejected"
            and (old is None or old.replaced_by != coid)
        ):
            state = f"{old.status}, replaced_by {old.replaced_by!r}" if old else "not journaled"
            broken.append(f"{coid} was answered as replacing {answer.replaces}, which is {state}")
    for coid, order in journal.items():
        if order.status != "replaced":
            continue
        new = journal.get(order.replaced_by or "")
        if new is None or new.replaces != coid:
            broken.append(
                f"{coid}: replaced_by {order.replaced_by!r} not linked back in the journal"
            )
        elif new.client_order_id not in broker:
            broken.append(f"{coid}: its replacement {new.client_order_id} is not at the broker")
    return broken


def pairs(journal: Mapping[str, Order]) -> list[tuple[Order, list[str], list[str]]]:
    """Every OCO pair (a bracket's exits are one; so are the pieces released together):
    (first record of its lesser leg, that leg's chain, its peer's chain)."""
    out = []
    for coid, order in journal.items():
        leg = order.leg
        if leg is None or leg.peer_id is None or order.replaces is not None or coid > leg.peer_id:
            continue  # each pair once, from the first record of its lesser leg
        out.append((order, chain(journal, coid), chain(journal, leg.peer_id)))
    return out


def peers_both_working(journal: Mapping[str, Order], book: Mapping[str, Order]) -> list[str]:
    """Pairs where a leg works on after its peer filled, or both filled more than the
    pair's quantity, as ``book`` has the orders.

    A leg's side of the pair is its chain of replacements (a peer reduced after a
    partial fill is replaced); ``book`` orders it lacks count as not there.
    """
    bad = []
    for first, my_chain, their_chain in pairs(journal):
        mine = [book[c] for c in my_chain if c in book]
        theirs = [book[c] for c in their_chain if c in book]
        if not mine or not theirs:
            continue
        filled = sum((o.filled_qty for o in (*mine, *theirs)), Decimal(0))
        if filled > first.qty:
            bad.append(
                f"{first.client_order_id} + {their_chain[0]}: {filled} of {first.qty} filled"
            )
        for a, b in ((mine, theirs), (theirs, mine)):
            if a[-1].status == "filled" and b[-1].status in OPEN_STATUSES:
                bad.append(
                    f"{b[-1].client_order_id} is {b[-1].status} after its peer"
                    f" {a[-1].client_order_id} filled"
                )
    return bad


def pairs_decided(journal: Mapping[str, Order]) -> int:
    """Pairs one of whose legs filled: those whose peer had to be canceled."""
    return sum(
        1
        for _, mine, theirs in pairs(journal)
        if any(journal[c].status == "filled" for c in (mine[-1], theirs[-1]) if c in journal)
    )


def held_after_parent_filled(journal: Mapping[str, Order]) -> list[str]:
    """Emulated children still held although their parent filled: never released."""
    stuck = []
    for coid, order in journal.items():
        leg = order.leg
        if order.status != "held" or leg is None or leg.parent_id is None:
            continue
        parent = journal.get(chain(journal, leg.parent_id)[-1])
        if parent is not None and parent.status == "filled":
            stuck.append(f"{coid}: held, its parent {parent.client_order_id} filled")
    return stuck


def pieces_of(journal: Mapping[str, Order], child: str) -> list[Order]:
    """An emulated child and the pieces released after it (``<child>.2``, ``.3`` ...)."""
    out = []
    coid, n = child, 1
    while (piece := journal.get(coid)) is not None:
        out.append(piece)
        n += 1
        coid = f"{child}.{n}"
    return out


def released_off(journal: Mapping[str, Order]) -> list[str]:
    """Emulated OTO children whose released quantity is not what their parent filled.

    A child is sized to its parent's fill: once settled, the quantities of its pieces
    that went out (held or canceled before they were sent aside) add up to the
    parent's filled quantity, whether the parent filled, was canceled after a part,
    or ended unfilled (then nothing went out). Short: a release was dropped; over: a
    release went out twice. The chaos clients never cancel a list's legs, so no
    child is taken back by a client here.
    """
    bad = []
    for coid, parent in journal.items():
        leg = parent.leg
        if leg is None or not leg.emulated or leg.contingency != "oto" or leg.role != "parent":
            continue
        for child in leg.children:
            sent = [p.qty for p in pieces_of(journal, child) if not never_sent(p)]
            released = sum(sent, Decimal(0))
            if released != parent.filled_qty:
                bad.append(
                    f"{child}: released {released} (pieces sent: {len(sent)}),"
                    f" its parent {coid} ({parent.status}) filled {parent.filled_qty}"
                )
    return bad
