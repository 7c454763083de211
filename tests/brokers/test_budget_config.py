"""A connection's gate and budget as configured (``[brokers.<name>]``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ult_actors.brokers.budget import budget_for
from ult_actors.config import ServiceConfig, load_config
from ult_actors.errors import ConfigError


def load_config_text(tmp_path: Path, paper_lines: str) -> ServiceConfig:
    path = tmp_path / "ult.toml"
    path.write_text(f'[brokers.paper]\nkind = "paper"\n{paper_lines}')
    return load_config(path, env={})


def test_gate_and_budget_are_read_per_broker(tmp_path: Path) -> None:
    cfg = load_config_text(
        tmp_path, 'on_unavailable = "refuse"\nrequests_per_s = 5\nrequest_burst = 2\n'
    )
    paper = next(b for b in cfg.brokers if b.name == "paper")
    assert paper.on_unavailable == "refuse"
    budget = budget_for(paper.name, paper.kind, paper.requests_per_s, paper.request_burst)
    assert budget is not None
    assert (budget.rate_per_s, budget.burst) == (5.0, 2)


def test_venue_defaults_keep_under_the_published_limits() -> None:
    alpaca = budget_for("a", "alpaca", None, None)
    oanda = budget_for("o", "oanda", None, None)
    ib = budget_for("i", "ib", None, None)
    assert alpaca is not None and oanda is not None and ib is not None
    assert alpaca.burst + 60 * alpaca.rate_per_s <= 200  # Alpaca: 200 per minute
    assert oanda.burst + oanda.rate_per_s <= 100  # OANDA: 100 per second
    assert ib.burst + ib.rate_per_s < 50  # TWS: 50 messages per second, with margin
    assert budget_for("p", "paper", None, None) is None
    assert budget_for("a", "alpaca", 0, None) is None


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('on_unavailable = "wait"', "on_unavailable"),
        ("requests_per_s = -1", "requests_per_s"),
        ("request_burst = 0", "request_burst"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"brokers.paper.{key}"):
        load_config_text(tmp_path, line + "\n")
