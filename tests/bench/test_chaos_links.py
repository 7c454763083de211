"""The chaos run's own checks of replaces and OCO pairs catch what they are there to catch."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from bench.chaos.links import broken_replace_links, peers_both_working, released_off
from ult_actors.messages import Leg, Order, OrderRequest
from ult_actors.order_state import order_from_request


def order(coid: str, status: str, *, filled: int = 0, peer: str | None = None) -> Order:
    request = OrderRequest(
        symbol="AAPL", side="sell", qty=Decimal(10), type="limit",
        limit_price=Decimal(1), client_order_id=coid,
    )  # fmt: skip
    made = order_from_request(request, broker="paper", order_id=coid, status=status, now_ns=0)
    leg = None
    if peer is not None:
        leg = Leg(list_id="l", contingency="oco", role="take_profit", peer_id=peer, emulated=True)
    return msgspec.structs.replace(made, filled_qty=Decimal(filled), leg=leg)


def book(*orders: Order) -> dict[str, Order]:
    return {o.client_order_id: o for o in orders}


def test_a_stop_left_working_after_its_take_profit_filled_is_caught() -> None:
    settled = book(order("tp", "filled", filled=10, peer="sl"), order("sl", "canceled", peer="tp"))
    assert peers_both_working(settled, settled) == []
    working = book(order("tp", "filled", filled=10, peer="sl"), order("sl", "accepted", peer="tp"))
    assert peers_both_working(working, working) == ["sl is accepted after its peer tp filled"]


def test_a_peer_reduced_by_a_replace_is_followed_and_both_fills_are_counted() -> None:
    old = msgspec.structs.replace(order("sl", "replaced", filled=0, peer="tp"), replaced_by="sl.r")
    reduced = msgspec.structs.replace(order("sl.r", "filled", filled=7), replaces="sl")
    journal = book(order("tp", "canceled", filled=4, peer="sl"), old, reduced)
    # 4 + 7 of a pair of 10: one leg's fill did not reduce its peer enough.
    assert peers_both_working(journal, journal) == ["sl + tp: 11 of 10 filled"]


def test_a_replaced_order_whose_replacement_is_missing_or_unlinked_is_caught() -> None:
    old = msgspec.structs.replace(order("c", "replaced"), replaced_by="c.r1")
    new = msgspec.structs.replace(order("c.r1", "accepted"), replaces="c")
    journal = book(old, new)
    assert broken_replace_links(journal, journal, {"c.r1": new}) == []
    assert broken_replace_links(journal, book(old), {}) == [
        "c: its replacement c.r1 is not at the broker"
    ]
    unended = book(order("c", "accepted"), new)
    assert broken_replace_links(unended, unended, {"c.r1": new}) == [
        "c.r1 was answered as replacing c, which is accepted, replaced_by None"
    ]


def oto(coid: str, status: str, qty: int, *, filled: int = 0, parent: str = "") -> Order:
    """A leg of the emulated OTO ``p`` (child ``k``): the parent, or a piece of the child."""
    if parent:
        leg = Leg(list_id="l", contingency="oto", role="child", parent_id=parent, emulated=True)
    else:
        leg = Leg(list_id="l", contingency="oto", role="parent", children=("k",), emulated=True)
    made = order(coid, status, filled=filled)
    return msgspec.structs.replace(
        made, qty=Decimal(qty), leg=leg, id="" if status == "held" else coid
    )


def test_an_oto_child_released_off_of_its_parents_fill_or_beyond_it_is_caught() -> None:
    parent = oto("p", "filled", 10, filled=10)
    pieces = (oto("k", "filled", 4, filled=4, parent="p"), oto("k.2", "accepted", 6, parent="p"))
    assert released_off(book(parent, *pieces)) == []
    # The last release dropped: the child and its one piece out for the first 4 only.
    assert released_off(book(parent, pieces[0])) == [
        "k: released 4 (pieces sent: 1), its parent p (filled) filled 10"
    ]
    twice = oto("k.3", "accepted", 6, parent="p")
    assert released_off(book(parent, *pieces, twice)) == [
        "k: released 16 (pieces sent: 3), its parent p (filled) filled 10"
    ]


def test_the_held_rest_of_a_child_is_not_counted_as_released() -> None:
    canceled = oto("p", "canceled", 10, filled=4)
    child = oto("k", "filled", 4, filled=4, parent="p")
    rest = msgspec.structs.replace(oto("k.2", "held", 6, parent="p"), status="canceled")
    assert released_off(book(canceled, child, rest)) == []
    unfilled = oto("p", "canceled", 10)
    assert released_off(book(unfilled, oto("k", "held", 10, parent="p"))) == []
