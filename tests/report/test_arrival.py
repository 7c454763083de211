"""Where an order's arrival price comes from when the venue offers no quote."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.messages import Fill
from ult_actors.report.arrival import ArrivalPrices, venue_quotes


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


async def test_a_paper_venue_quotes_only_the_symbols_it_trades(tmp_path: Path) -> None:
    settings = PaperSettings(
        symbols=["AAPL", "MSFT"], tick_interval_s=0, state_path=str(tmp_path / "paper.db")
    )
    connector = PaperConnector("paper", settings)
    await connector.connect()
    try:
        arrivals = ArrivalPrices(venue_quotes(connector))
        for _ in range(2):  # the second ask of each from what the first remembered
            assert arrivals.arrival("AAPL") == (connector.price("AAPL"), "venue_quote")
            assert arrivals.arrival("TSLA") is None
        # A symbol it does not trade starts no price walk at the venue.
        assert set(connector.venue.feed.known()) == {"AAPL"}
    finally:
        await connector.disconnect()
