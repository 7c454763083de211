"""The chaos run reads the service's book only once no order has fills still to come."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from bench.chaos.mix import still_filling
from ult_actors.messages import Order, OrderRequest, Side
from ult_actors.order_state import order_from_request


def limit(symbol: str, side: Side, price: str, *, filled: int = 0) -> Order:
    request = OrderRequest(
        symbol=symbol, side=side, qty=Decimal(30), type="limit",
        limit_price=Decimal(price), client_order_id="c",
    )  # fmt: skip
    made = order_from_request(
        request, broker="paper", order_id="c", status="partially_filled", now_ns=0
    )
    return msgspec.structs.replace(made, filled_qty=Decimal(filled))


def test_a_crossing_limit_filled_in_part_has_fills_to_come() -> None:
    # Paper fills a crossing limit in parts, one per tick: the book read between two
    # parts is short of what the broker and the journal hold once the run stops.
    assert still_filling(limit("AAPL", "buy", "100000", filled=20))
    assert still_filling(limit("MSFT", "sell", "1", filled=20))
    assert still_filling(limit("EUR_USD", "buy", "100"))


def test_a_far_limit_rests_for_good() -> None:
    assert not still_filling(limit("AAPL", "buy", "1"))
    assert not still_filling(limit("AAPL", "sell", "100000"))
    assert not still_filling(limit("EUR_USD", "sell", "100"))
