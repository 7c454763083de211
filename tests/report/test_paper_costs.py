"""What orders cost on a paper market whose prices the test sets: every figure checked
against one worked out by hand, through the real service, socket and SQLite journal.

The market: AAPL at 100.00, fills 10 bps worse than the price (no size impact),
a commission of 0.01 a share.

1. buy 100 at market: arrival 100 (the venue's quote), filled at 100.10.
   Slippage +10 bps; price impact 0.10 x 100 = 10.00; fees 1.00; shortfall 11.00.
2. buy 10 limit 90: rests (arrival 100), canceled at the end, nothing filled.
3. AAPL moves to 102; sell 50 at market: arrival 102, filled at 101.898.
   Slippage +10 bps (a sell below arrival is a cost); impact 0.102 x 50 = 5.10;
   fees 0.50; shortfall 5.60.
   Order 2's opportunity cost: the price ran from 100 to 101.898 (the last fill
   when it ended) on 10 shares it never bought: 18.98, its whole shortfall.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.service_harness import one_broker_config, served
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.errors import InvalidOrder
from ult_actors.service import build_service


@pytest.fixture
def state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ult-r", dir="/tmp"))  # short: the socket lives here
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_slippage_and_shortfall_match_the_figures_worked_by_hand(state: Path) -> None:
    settings = PaperSettings(
        tick_interval_s=0,
        state_path=":memory:",
        start_prices={"AAPL": Decimal("100")},
        slippage_bps=Decimal("10"),
        size_impact_bps_per_share=Decimal("0"),
        commission_per_share=Decimal("0.01"),
    )
    venue: list[PaperConnector] = []

    def connector() -> PaperConnector:
        venue.append(PaperConnector("paper", settings))
        return venue[-1]

    svc = build_service(
        one_broker_config(state, "paper", settings),
        env={},
        rng=random.Random(3),
        connector_factories={"paper": connector},
    )
    async with served(svc, state) as client:
        with trio.fail_after(30):
            empty = await client.report()
            assert (empty.total_orders, empty.rows) == (0, [])

            await client.submit("AAPL", "buy", 100, client_order_id="buy-1", wait=True)
            await client.submit(
                "AAPL", "buy", 10, type="limit", limit_price=90, client_order_id="rest-2"
            )
            venue[-1].set_price("AAPL", 102)
            await client.submit("AAPL", "sell", 50, client_order_id="sell-3", wait=True)
            await client.cancel("rest-2")

            # A symbol the venue does not trade: refused, and no price walk started for it.
            with pytest.raises(InvalidOrder):
                await client.submit("NOPE", "buy", 1, wait=True)
            assert "NOPE" not in venue[-1].venue.feed.known()

            by_order = await client.report(by="order", with_orders=True)
            by_symbol = await client.report(by="symbol")

    costs = {c.client_order_id: c for c in by_order.orders}
    buy, rest, sell = costs["buy-1"], costs["rest-2"], costs["sell-3"]
    assert (buy.arrival_price, buy.arrival_source) == (Decimal("100"), "venue_quote")
    assert buy.avg_fill_price == Decimal("100.1")
    assert buy.slippage_bps == pytest.approx(10.0)
    assert (buy.price_impact, buy.fees, buy.opportunity) == (Decimal("10.0"), Decimal("1"), 0)
    assert buy.shortfall == Decimal("11")

    assert sell.arrival_price == Decimal("102")
    assert sell.avg_fill_price == Decimal("101.898")
    assert sell.slippage_bps == pytest.approx(10.0)
    assert (sell.price_impact, sell.fees) == (Decimal("5.1"), Decimal("0.5"))
    assert sell.shortfall == Decimal("5.6")

    assert (rest.status, rest.filled_qty, rest.slippage_bps) == ("canceled", 0, None)
    assert rest.opportunity == Decimal("18.98")
    assert rest.shortfall == Decimal("18.98")

    assert buy.first_fill_s is not None and buy.first_fill_s >= 0
    assert rest.first_fill_s is None

    aapl, nope = by_symbol.rows
    assert (nope.key, nope.orders, nope.filled_qty, nope.shortfall) == ("NOPE", 1, 0, 0)
    [refused] = [c for c in by_order.orders if c.symbol == "NOPE"]
    assert (refused.status, refused.arrival_price) == ("rejected", None)
    assert (aapl.key, aapl.orders, aapl.filled_qty) == ("AAPL", 3, Decimal("150"))
    assert aapl.notional == Decimal("15104.9")  # 100 x 100.10 + 50 x 101.898
    assert aapl.fees == Decimal("1.5")
    assert aapl.shortfall == Decimal("35.58")  # 11.00 + 5.60 + 18.98
    assert aapl.slippage_bps_p50 == pytest.approx(10.0)
    assert aapl.slippage_bps_p90 == pytest.approx(10.0)


async def test_realized_pl_between_broker_reports_is_net_of_commission(state: Path) -> None:
    """Bought 100 at 100.10, sold 50 at 101.898 (the market above): 89.90 realized on the
    prices, less 1.00 + 0.50 commission: 88.40, in the service's own book before any
    report of the broker's replaces it."""
    settings = PaperSettings(
        tick_interval_s=0,
        state_path=":memory:",
        start_prices={"AAPL": Decimal("100")},
        slippage_bps=Decimal("10"),
        size_impact_bps_per_share=Decimal("0"),
        commission_per_share=Decimal("0.01"),
    )
    venue: list[PaperConnector] = []

    def connector() -> PaperConnector:
        venue.append(PaperConnector("paper", settings))
        return venue[-1]

    cfg = one_broker_config(state, "paper", settings)
    cfg.positions.sync_interval_s = 3600  # no broker report after the one at start
    svc = build_service(cfg, env={}, rng=random.Random(3), connector_factories={"paper": connector})
    async with served(svc, state) as client:
        with trio.fail_after(30):
            await client.submit("AAPL", "buy", 100, wait=True)
            venue[-1].set_price("AAPL", 102)
            await client.submit("AAPL", "sell", 50, wait=True)
            while True:  # the fills reach the positions actor through the bus
                [position] = await client.positions() or [None]
                if position is not None and position.qty == 50:
                    break
                await trio.sleep(0.01)
    assert position.realized_pl == Decimal("88.4")
