"""Restrictions the service imposed lift themselves; those a person set wait for a person."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.fakes import FakeConnector, FakeVenue
from ult_actors.actors.trading_state import FILE_NAME
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import RiskRejected
from ult_actors.messages import (
    Event,
    OrderReply,
    OrderRequest,
    SetTradingState,
    Submit,
    TradingStateChanged,
)
from ult_actors.runtime.pubsub import Subscription
from ult_actors.service import Service, build_service
from ult_actors.systemd.watchdog import status_line

BUY = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(5))


def config(tmp: Path) -> ServiceConfig:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="fake", state_dir=str(tmp)),
        brokers=[BrokerEntry(name="fake", kind="fake", enabled=True, settings=None)],
    )
    cfg.positions.sync_interval_s = 0.05
    return cfg


@asynccontextmanager
async def running(tmp: Path, venue: FakeVenue) -> AsyncIterator[Service]:
    svc = build_service(
        config(tmp),
        env={},
        rng=random.Random(3),
        connector_factories={"fake": lambda: FakeConnector("fake", venue)},
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


async def next_change(changes: Subscription[Event]) -> TradingStateChanged:
    with trio.fail_after(10):
        event = await changes.receive()
    assert isinstance(event, TradingStateChanged)
    return event


async def healthy_pulls(svc: Service, count: int = 3) -> None:
    """Wait until positions has pulled the broker ``count`` more times."""
    with trio.fail_after(10):
        for _ in range(count):
            before = svc.book.synced_at.get("fake")
            while svc.book.synced_at.get("fake") == before:
                await trio.sleep(0.01)


async def buy(svc: Service, request_id: int) -> str:
    """Submit a buy; its final status, or the risk limit that refused it.

    Risk reads its mailbox in order, so this also proves every lift sent
    before it was handled.
    """
    try:
        reply = await svc.gateway.handle(Submit(id=request_id, order=BUY))
    except RiskRejected as exc:
        return f"refused: {exc}"
    assert isinstance(reply, OrderReply)
    return reply.order.status


async def test_a_persons_setting_wins_over_the_service_lifting_its_own(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(tmp_path, venue) as svc:
        changes = svc.bus.subscribe(lambda e: isinstance(e, TradingStateChanged))
        venue.fail_positions = True
        restricted = await next_change(changes)
        assert (restricted.state, restricted.set_by) == ("reducing", "service")
        assert "trading active (fake reducing)" in status_line(svc)
        # A person tightens it while the service's restriction holds.
        await svc.gateway.handle(SetTradingState(id=1, state="halted", broker="fake"))
        venue.fail_positions = False
        await healthy_pulls(svc)
        assert "halted" in await buy(svc, 2)
        setting = svc.health().broker_trading["fake"]
        assert (setting.state, setting.set_by) == ("halted", "person")
        # And a person's own reducing is not lifted either.
        await svc.gateway.handle(SetTradingState(id=3, state="reducing", broker="fake"))
        await healthy_pulls(svc)
        assert "reducing" in await buy(svc, 4)


async def test_a_service_restriction_saved_across_a_restart_is_still_lifted_by_the_service(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    async with running(tmp_path, venue) as svc:
        changes = svc.bus.subscribe(lambda e: isinstance(e, TradingStateChanged))
        venue.fail_positions = True
        assert (await next_change(changes)).set_by == "service"
    saved = json.loads((tmp_path / FILE_NAME).read_text())
    assert saved["settings"]["fake"]["set_by"] == "service"
    venue.fail_positions = False
    async with running(tmp_path, venue) as svc:
        await healthy_pulls(svc)
        assert await buy(svc, 1) == "filled"
        setting = svc.health().broker_trading["fake"]
        assert (setting.state, setting.set_by) == ("active", "service")
        assert "reconciled" in setting.reason


async def test_a_state_file_from_before_origins_loads_and_its_restriction_waits_for_a_person(
    tmp_path: Path,
) -> None:
    old = {
        "trading": "active",
        "broker_trading": {"fake": "reducing"},
        "reason": "no position report: timeout",
        "at_ns": 1,
    }
    (tmp_path / FILE_NAME).write_text(json.dumps(old))
    async with running(tmp_path, FakeVenue()) as svc:
        await healthy_pulls(svc)
        assert "reducing" in await buy(svc, 1)
        setting = svc.health().broker_trading["fake"]
        assert (setting.state, setting.set_by) == ("reducing", "person")
        assert "saved without who set it" in setting.reason
        await svc.gateway.handle(SetTradingState(id=2, state="active", broker="fake"))
        assert await buy(svc, 3) == "filled"


@pytest.mark.parametrize("initial", ["active", "reducing"])
async def test_health_names_who_set_the_global_state(tmp_path: Path, initial: str) -> None:
    cfg_state = tmp_path / FILE_NAME
    assert not cfg_state.exists()
    async with running(tmp_path, FakeVenue()) as svc:
        if initial == "reducing":
            await svc.gateway.handle(SetTradingState(id=1, state="reducing"))
        health = svc.health()
        assert health.trading is not None
        expected = ("active", "config") if initial == "active" else ("reducing", "person")
        assert (health.trading.state, health.trading.set_by) == expected
        assert health.broker_trading["fake"].state == initial
