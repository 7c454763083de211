"""Arrival prices at remote venues, through the whole service: the venue's quote, asked
beside the order's send, stamped on the journaled order and measured against."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.brokers.alpaca import harness as alpaca
from tests.brokers.ib import harness as ib
from tests.brokers.oanda.harness import running_sim, settings_for
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.messages import (
    GetReport,
    OrderCost,
    OrderReply,
    OrderRequest,
    ReportQuery,
    ReportReply,
    Submit,
)
from ult_actors.service import Service, build_service

BOUND_S = 15


@asynccontextmanager
async def serving(cfg: ServiceConfig) -> AsyncIterator[Service]:
    svc = build_service(cfg, env={}, rng=random.Random(3))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND_S):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


async def cost_when(svc: Service, coid: str, ready: Callable[[OrderCost], bool]) -> OrderCost:
    """The order's cost once ``ready`` holds: the quote's answer may come after the order's."""
    with trio.fail_after(BOUND_S):
        while True:
            reply = await svc.gateway.handle(
                GetReport(id=9, query=ReportQuery(by="order", with_orders=True))
            )
            assert isinstance(reply, ReportReply)
            found = [c for c in reply.report.orders if c.client_order_id == coid]
            if found and ready(found[0]):
                return found[0]
            await trio.sleep(0.01)  # the journal has no event for this; bounded above


async def test_an_oanda_order_arrives_at_oandas_quote(tmp_path: Path) -> None:
    async with running_sim() as sim:
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="oanda", state_dir=str(tmp_path)),
            brokers=[
                BrokerEntry(name="oanda", kind="oanda", enabled=True, settings=settings_for(sim))
            ],
        )
        async with serving(cfg) as svc:
            sim.set_price("EUR_USD", {"bid": "1.10000", "ask": "1.10020"})
            order = OrderRequest(
                symbol="EUR_USD", side="buy", qty=Decimal(1000), client_order_id="arr-1"
            )
            with trio.fail_after(BOUND_S):
                reply = await svc.gateway.handle(Submit(id=1, order=order, wait=True))
            assert isinstance(reply, OrderReply) and reply.order.status == "filled"
            cost = await cost_when(svc, "arr-1", lambda c: c.arrival_source == "venue_quote")
    # Bought at the ask, 1 pip above the mid the venue quoted at arrival.
    assert cost.arrival_price == Decimal("1.10010")
    assert cost.avg_fill_price == Decimal("1.10020")
    assert cost.slippage_bps == pytest.approx(float(Decimal("0.0001") / Decimal("1.1001") * 10_000))


async def test_an_alpaca_order_arrives_at_alpacas_latest_quote(tmp_path: Path) -> None:
    async with alpaca.running_sim() as (sim, port):
        settings = alpaca.settings_for(port)
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="alpaca", state_dir=str(tmp_path)),
            brokers=[BrokerEntry(name="alpaca", kind="alpaca", enabled=True, settings=settings)],
        )
        async with serving(cfg) as svc:
            sim.venue.set_price("AAPL", Decimal("190.00"))
            order = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(5), client_order_id="arr-2")
            with trio.fail_after(BOUND_S):
                reply = await svc.gateway.handle(Submit(id=1, order=order, wait=True))
            assert isinstance(reply, OrderReply) and reply.order.status == "filled"
            cost = await cost_when(svc, "arr-2", lambda c: c.arrival_source == "venue_quote")
    # The mid of 189.99 / 190.01, where the simulator's market orders fill: no slippage.
    assert (cost.arrival_price, cost.avg_fill_price, cost.slippage_bps) == (
        Decimal("190.00"),
        Decimal("190.00"),
        0.0,
    )


async def test_an_ib_order_arrives_at_the_mid_of_a_tws_snapshot(tmp_path: Path) -> None:
    async with ib.running_sim() as sim:
        cfg = ServiceConfig(
            service=ServiceSection(default_broker="ib", state_dir=str(tmp_path)),
            brokers=[
                BrokerEntry(name="ib", kind="ib", enabled=True, settings=ib.settings(sim.port))
            ],
        )
        async with serving(cfg) as svc:
            await sim.set_price("AAPL", Decimal(200))
            bid, ask = sim.exchange.quote("AAPL")
            order = OrderRequest(
                symbol="AAPL", side="buy", qty=Decimal(10), client_order_id="arr-3"
            )
            with trio.fail_after(BOUND_S):
                reply = await svc.gateway.handle(Submit(id=1, order=order, wait=True))
            assert isinstance(reply, OrderReply) and reply.order.status == "filled"
            cost = await cost_when(svc, "arr-3", lambda c: c.arrival_source == "venue_quote")
    # The simulator quotes 199.98 / 200.02 around 200 and fills a market buy at the ask:
    # 0.02 above the mid the snapshot gave, 1 bp.
    assert (bid, ask) == (Decimal("199.98"), Decimal("200.02"))
    assert (cost.arrival_price, cost.avg_fill_price) == (Decimal(200), Decimal("200.02"))
    assert cost.slippage_bps == pytest.approx(1.0)
