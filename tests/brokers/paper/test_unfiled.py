"""What a paper venue keeps until its file has it: found by id, client id and order, until let go."""

from __future__ import annotations

from decimal import Decimal

from tests.brokers.paper.test_shared_file import filled_order
from ult_actors.brokers.paper.records import WorkingOrder
from ult_actors.brokers.paper.unfiled import Unfiled
from ult_actors.messages import Fill, Order


def _fill(order: Order, n: int) -> Fill:
    return Fill(
        fill_id=f"abc.f{n}", order_id=order.id, client_order_id=order.client_order_id,
        broker="desk", symbol="AAPL", side="buy", qty=Decimal(n), price=Decimal(100), ts=n,
    )  # fmt: skip


def test_orders_and_fills_added_after_a_lookup_are_found_too_until_the_file_has_them() -> None:
    unfiled = Unfiled()
    first, second = filled_order("c-1", 1), filled_order("c-2", 2)
    fills = [_fill(first, 1), _fill(second, 2), _fill(first, 3)]
    calls = [([WorkingOrder(order=first)], fills[:1]), ([WorkingOrder(order=second)], fills[1:])]
    unfiled.add(*calls[0], seq=1)
    assert unfiled.order(first.id) == WorkingOrder(order=first)
    assert unfiled.order(second.id) is None
    # Added after a lookup indexed the generation (the caller's lists reused): found too.
    calls[0][1].clear()
    unfiled.add(*calls[1], seq=2)
    assert unfiled.order(second.id) == WorkingOrder(order=second)
    assert unfiled.by_client_id("c-1") == WorkingOrder(order=first)
    assert unfiled.fills(first.id) == [fills[0], fills[2]]
    unfiled.let_go(1)  # the file has batch 1, not 2: the generation holds both
    assert unfiled.by_client_id("c-2") == WorkingOrder(order=second)
    unfiled.let_go(2)
    assert (unfiled.order(first.id), unfiled.by_client_id("c-2"), unfiled.fills(first.id)) == (
        None, None, [],
    )  # fmt: skip
