"""Where the Alpaca connector asks for quotes: Alpaca's market data host, or the REST
root given (a simulator serves both), or ``ALPACA_DATA_URL``."""

from __future__ import annotations

from ult_actors.brokers.alpaca.settings import AlpacaSettings, alpaca_settings_from_env, data_url


def test_market_data_follows_the_rest_root_given_unless_set_itself() -> None:
    assert data_url(AlpacaSettings()) == "https://data.alpaca.markets"
    assert data_url(AlpacaSettings(paper=False)) == "https://data.alpaca.markets"
    at_sim = AlpacaSettings(base_url="http://127.0.0.1:8765/")
    assert data_url(at_sim) == "http://127.0.0.1:8765"
    own = alpaca_settings_from_env({"ALPACA_DATA_URL": "http://127.0.0.1:9000"}, at_sim)
    assert data_url(own) == "http://127.0.0.1:9000"
