"""The running service speaks to systemd: READY once the tree is up, STATUS, WATCHDOG, STOPPING.

These run ``app.run_service`` (what ``ult serve`` runs) in-process on fake
brokers, with ``NOTIFY_SOCKET`` pointing at a datagram socket the test owns.
"""

from __future__ import annotations

import gc
import os
import random
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
import trio
import trio.testing

from tests.fakes import FakeConnector, FakeVenue
from ult_actors.cli.serve import run_service
from ult_actors.collector import YOUNG_THRESHOLD
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.journal import memory_store_opener
from ult_actors.messages import OrderReply, OrderRequest, Submit
from ult_actors.service import Service, build_service
from ult_actors.testing.notify import NotifyListener


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


# The settings are the process's (run_service settles them once ready).
pytestmark = pytest.mark.usefixtures("collector_restored")


def fake_service(tmp: Path, venues: dict[str, FakeVenue]) -> Service:
    names = list(venues)
    cfg = ServiceConfig(
        service=ServiceSection(default_broker=names[0], state_dir=str(tmp)),
        brokers=[BrokerEntry(name=n, kind="fake", enabled=True, settings=None) for n in names],
    )
    cfg.supervision.backoff_initial_ms = 50
    cfg.supervision.backoff_cap_ms = 200
    factories = {n: (lambda n=n, v=v: FakeConnector(n, v)) for n, v in venues.items()}
    return build_service(
        cfg,
        env={},
        rng=random.Random(7),
        connector_factories=factories,  # type: ignore[arg-type]
        store_opener=memory_store_opener(),  # the journal's own tests cover SQLite
    )


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    with NotifyListener() as owned:
        monkeypatch.setenv("NOTIFY_SOCKET", owned.address)
        yield owned


async def test_ready_status_watchdog_and_stopping_follow_the_tree(
    autojump_clock: trio.testing.MockClock,
    listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")  # WatchdogSec=10s: ping every 5 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    venues = {"alpha": FakeVenue("alpha"), "beta": FakeVenue("beta")}
    svc = fake_service(tmp_path, venues)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_service, svc)
        with trio.fail_after(60):
            ready = await listener.wait_for("READY", "1")
        assert ready["STATUS"] == "brokers 2/2 up; 0 open orders; trading active"
        assert svc.root.health.state == "running"
        # Once ready, start-up's objects are frozen and young collections spaced out.
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
        # Read and removed: nothing the service spawns could speak for it.
        assert "NOTIFY_SOCKET" not in os.environ
        assert "WATCHDOG_USEC" not in os.environ

        with trio.fail_after(60):
            stamps = []
            for _ in range(3):
                await listener.wait_for("WATCHDOG", "1")
                stamps.append(trio.current_time())
        assert stamps[2] - stamps[1] == pytest.approx(5.0)
        assert stamps[1] - stamps[0] == pytest.approx(5.0)

        # A resting order shows up in STATUS ...
        reply = await svc.gateway.handle(
            Submit(
                id=1,
                order=OrderRequest(
                    symbol="AAPL", side="buy", qty=Decimal(1), type="limit",
                    limit_price=Decimal(90), client_order_id="rest-1",
                ),
            )
        )
        assert isinstance(reply, OrderReply)
        with trio.fail_after(60):
            msg = await listener.wait_for("STATUS")
        assert msg["STATUS"] == "brokers 2/2 up; 1 open order; trading active"

        # ... and so does a broker whose credentials are refused after a reconnect.
        venues["beta"].refuse_auth = True
        venues["beta"].kill_stream.set()
        with trio.fail_after(60):
            msg = await listener.wait_for("STATUS")
        assert msg["STATUS"] == "brokers 1/2 up (down: beta); 1 open order; trading active"
        # One broker down is the supervisor's business, not systemd's: pings go on.
        with trio.fail_after(60):
            await listener.wait_for("WATCHDOG", "1")

        nursery.cancel_scope.cancel()
    listener.drain()
    assert listener.messages[-1] == {"STOPPING": "1", "STATUS": "stopping"}


async def test_a_blocked_event_loop_sends_no_watchdog_pings(
    listener: NotifyListener, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Real clock here: the point is what happens while the loop is stuck in real time.
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
    svc = fake_service(tmp_path, {"alpha": FakeVenue("alpha")})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_service, svc)
        with trio.fail_after(30):
            await listener.wait_for("READY", "1")
            for _ in range(3):
                await listener.wait_for("WATCHDOG", "1")
        listener.drain()  # every ping sent so far is now read

        # Wedge the loop for 20 watchdog intervals (a sync call that never yields).
        time.sleep(1.0)  # noqa: ASYNC251 - blocking the loop is what this test is about
        # Still without yielding: a ping from a helper thread would be queued by now.
        assert listener.drain() == []

        # Once the loop runs again, so do the pings.
        with trio.fail_after(30):
            await listener.wait_for("WATCHDOG", "1")
        nursery.cancel_scope.cancel()
