"""A broker back from an outage has its ``reducing`` lifted while it is still reconciling.

Seen in the chaos run: a venue that came back sat in ``resyncing`` for seconds
(reconciliation on start, under faults and the request budget) while the
restriction for its missed position report held, because positions pulled
again only once the actor was ``running`` or at its next retry. Queries are
served from ``resyncing`` on, so the pull comes then. The whole service, with a
real SQLite journal, on a fake venue whose open-order list (which
reconciliation on start reads) is held back until the test lets it go.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tests.durability.harness import config
from tests.fakes import FakeConnector, FakeVenue
from ult_actors.messages import ConnectionStateChanged, Order, TradingStateChanged
from ult_actors.service import Service, build_service


class HeldReconcile(FakeConnector):
    """A connector whose open orders are answered only once ``release`` is set."""

    def __init__(self, venue: FakeVenue, release: trio.Event) -> None:
        super().__init__("fake", venue)
        self.release = release

    async def open_orders(self) -> list[Order]:
        await self.release.wait()
        return await super().open_orders()


@asynccontextmanager
async def running(tmp: Path, venue: FakeVenue, release: trio.Event) -> AsyncIterator[Service]:
    cfg = config(tmp)
    # The retry of a broker that gave no report comes after min(5 s, this): 5 s.
    cfg.positions.sync_interval_s = 3600.0
    cfg.supervision.connect_backoff_cap_s = 0.2
    svc = build_service(
        cfg,
        env={},
        rng=random.Random(3),
        connector_factories={"fake": lambda: HeldReconcile(venue, release)},
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


async def test_reducing_lifts_once_the_broker_answers_not_after_its_reconciliation(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    venue.unreachable = True
    release = trio.Event()
    async with running(tmp_path, venue, release) as svc:
        changes = svc.bus.subscribe(
            lambda e: isinstance(e, TradingStateChanged | ConnectionStateChanged)
        )
        with trio.fail_after(15):
            async for event in changes:
                if isinstance(event, TradingStateChanged) and event.state == "reducing":
                    break
        venue.unreachable = False
        # Well before the 5 s retry, and with reconciliation still held: the pull
        # came when the connection started resyncing.
        seen: list[str] = []
        with trio.fail_after(2.5):
            async for event in changes:
                if isinstance(event, ConnectionStateChanged):
                    seen.append(event.state)
                elif event.state == "active":
                    break
        assert "resyncing" in seen and "ready" not in seen
        setting = svc.health().broker_trading["fake"]
        assert (setting.state, setting.set_by) == ("active", "service")
        release.set()
