"""The chaos run's end: the service's book is read only once no order has fills still to
come, and a lost order is reported with what the journal says of it."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from bench.chaos.__main__ import Tally, check
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


def test_a_lost_order_is_reported_with_what_the_journal_says_of_it() -> None:
    sent = msgspec.structs.replace(limit("AAPL", "buy", "1"), status="accepted", id="paper.9")
    report = check([], Tally(), {"c": sent}, {}, {}, {}, [])
    assert report["lost_ids"] == ["c"]
    assert report["lost_in_journal"] == {"c": "accepted id=paper.9 filled=0 outcome=definitive"}
