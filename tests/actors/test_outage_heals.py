"""A broker away and back: the service trades through it again within the backoff cap, by itself.

The whole service on the Alpaca simulator over real loopback sockets and a
real SQLite journal. The simulator is stopped (every connection refused),
kept away until the connection has failed to connect ``tries`` times, and
served again on the same port with its book intact. Nobody sends a command:
the connection keeps being tried (never parked), the ``reducing`` the
service imposed for the missed position report is lifted once a report
reconciles, and a buy fills. ``bench/outage.py`` does the same with real
processes and outages of 2, 20 and 90 s.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
import trio

from ult_actors.config import load_config
from ult_actors.errors import BrokerUnavailable, RiskRejected
from ult_actors.messages import (
    ActorHealthChanged,
    Event,
    OrderReply,
    OrderRequest,
    Submit,
    TradingStateChanged,
)
from ult_actors.runtime.pubsub import Subscription
from ult_actors.service import Service, build_service
from ult_actors.sim.alpaca.server import AlpacaSim, make_alpaca_sim, serve_alpaca_sim

KEY = "PKOUTAGEKEY00000001"
SECRET = "outage-secret-0123456789abcdef"
CAP_S = 0.25


class SimServer:
    """One simulator that can be taken away and served again on its port, book intact."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.sim: AlpacaSim = make_alpaca_sim(key=KEY, secret=SECRET, seed=7, fill_delay_s=0.01)
        self.nursery = nursery
        self.port = 0
        self.scope = trio.CancelScope()

    async def start(self) -> None:
        self.scope = trio.CancelScope()
        self.port = await self.nursery.start(self._serve, self.port)

    async def _serve(self, port: int, task_status: trio.TaskStatus[int]) -> None:
        with self.scope:
            await serve_alpaca_sim(self.sim, port=port, task_status=task_status)

    def stop(self) -> None:
        self.scope.cancel()


@asynccontextmanager
async def service_on(port: int, state_dir: Path) -> AsyncIterator[Service]:
    env = {
        "ALPACA_API_KEY": KEY,
        "ALPACA_API_SECRET": SECRET,
        "ALPACA_BASE_URL": f"http://127.0.0.1:{port}",
        "ALPACA_STREAM_URL": f"ws://127.0.0.1:{port}/stream",
        "ENABLE_PAPER_TRADING": "false",
        "DEFAULT_BROKER": "alpaca",
        "ORDER_RETRY_DELAY": "10",
        "ULT_STATE_DIR": str(state_dir),
    }
    cfg = load_config(None, env=env)
    cfg.supervision.connect_backoff_cap_s = CAP_S
    cfg.supervision.backoff_initial_ms = 50
    cfg.positions.sync_interval_s = 0.3
    (alpaca,) = [b for b in cfg.brokers if b.kind == "alpaca"]
    # The lost stream gives up within half a second (its reconnects up to 0.1 s apart, not
    # 5 s): the outage is then the connection's to heal, which is what this tests. And the
    # request budget is ten times Alpaca's, as the position pulls are a hundred times as
    # often: at 3 a second they alone would use it up and hold back the resync after it.
    alpaca.settings = msgspec.structs.replace(alpaca.settings, stream_backoff_cap_s=0.1)
    alpaca.requests_per_s = 30
    svc = build_service(cfg, env=env, rng=random.Random(5))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


def order(coid: str, side: str = "buy") -> OrderRequest:
    return OrderRequest(symbol="AAPL", side=side, qty=Decimal(1), client_order_id=coid)  # type: ignore[arg-type]


async def first_event(events: Subscription[Event], wanted: str, timeout: float = 30.0) -> Event:
    """The next event whose fields match ``wanted``, written ``field=value field=value``."""
    with trio.fail_after(timeout):
        async for event in events:
            if all(getattr(event, k) == v for k, v in _fields(wanted).items()):
                return event
    raise AssertionError(f"the event stream ended before {wanted}")


def _fields(wanted: str) -> dict[str, str]:
    return dict(part.split("=") for part in wanted.split())


@pytest.mark.parametrize("tries", [1, 8])
async def test_a_broker_away_and_back_trades_again_within_the_cap_with_no_command(
    tmp_path: Path, tries: int
) -> None:
    async with trio.open_nursery() as nursery:
        server = SimServer(nursery)
        await server.start()
        async with service_on(server.port, tmp_path) as svc:
            states = svc.bus.subscribe(lambda e: isinstance(e, TradingStateChanged))
            health = svc.bus.subscribe(
                lambda e: isinstance(e, ActorHealthChanged) and e.name == "broker.alpaca"
            )
            reply = await svc.gateway.handle(Submit(id=1, order=order("before"), wait=True))
            assert isinstance(reply, OrderReply) and reply.order.status == "filled"

            server.stop()
            await first_event(states, "state=reducing broker=alpaca set_by=service")
            for _ in range(tries):  # 8 > max_restarts (5): it would have been parked
                await first_event(health, "state=connecting")
            with pytest.raises(RiskRejected, match="reducing"):
                await svc.gateway.handle(Submit(id=2, order=order("refused")))
            # An order that shrinks the position goes to the broker: refused at once.
            with trio.fail_after(5), pytest.raises(BrokerUnavailable, match="cannot connect"):
                await svc.gateway.handle(Submit(id=3, order=order("away", "sell")))

            await server.start()
            back = trio.current_time()
            await first_event(states, "state=active broker=alpaca set_by=service")
            reply = await svc.gateway.handle(Submit(id=4, order=order("after"), wait=True))
            healed_s = trio.current_time() - back
            assert isinstance(reply, OrderReply) and reply.order.status == "filled"
            # Within the cap: the next try, then one position pull (plus a loaded machine).
            assert healed_s < CAP_S + 4.0
            rows = {h.name: h for h in svc.health().actors}
            assert rows["broker.alpaca"].state == "running"
            assert svc.health().broker_trading["alpaca"].state == "active"
        server.stop()
