"""Where an order's arrival price comes from when the venue offers no quote."""

from __future__ import annotations

from decimal import Decimal

from ult_actors.messages import Fill
from ult_actors.report.arrival import ArrivalPrices


def test_without_a_venue_quote_the_last_trade_seen_is_the_arrival_price_marked_so() -> None:
    arrivals = ArrivalPrices(None)
    assert arrivals.arrival("AAPL") is None  # nothing seen yet: none
    arrivals.saw(
        Fill(
            fill_id="f-1", order_id="b-1", client_order_id="c-0", broker="paper",
            symbol="AAPL", side="sell", qty=Decimal(1), price=Decimal("187.5"),
        )
    )  # fmt: skip
    assert arrivals.arrival("AAPL") == (Decimal("187.5"), "last_trade")


def test_a_venue_quote_wins_and_none_for_the_symbol_falls_back() -> None:
    quotes = {"AAPL": Decimal("190")}
    arrivals = ArrivalPrices(quotes.get)
    assert arrivals.arrival("AAPL") == (Decimal("190"), "venue_quote")
    quotes.clear()
    assert arrivals.arrival("AAPL") is None
