"""Shared pieces of the Alpaca tests: a simulator on a real loopback socket and a connector on it.

No tests live here; the test modules import these helpers.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from tests.brokers.contract import UpdateLog
from tests.brokers.harness import connected_connector
from ult_actors.brokers.alpaca.connector import AlpacaConnector
from ult_actors.brokers.alpaca.ledger import FillLedger
from ult_actors.brokers.alpaca.settings import AlpacaSettings
from ult_actors.config import load_config
from ult_actors.journal import memory_store_opener
from ult_actors.secrets import Secret
from ult_actors.service import Service, build_service
from ult_actors.sim.alpaca.server import AlpacaSim, make_alpaca_sim, serve_alpaca_sim

KEY = "PKTESTKEY0000000001"
SECRET = "sim-secret-do-not-leak-0123456789"


def clock_standing_in_this_minute(second: int) -> Callable[[], int]:
    """A wall clock standing still ``second`` s into the current minute.

    The simulator's rate-limit window is a calendar minute: a test reading the real
    clock that runs across a minute's end finds its budget renewed at the venue, or
    the reset the connector heard already passed.
    """
    frozen_ns = time.time_ns() // 60_000_000_000 * 60_000_000_000 + second * 1_000_000_000
    return lambda: frozen_ns


@asynccontextmanager
async def running_sim(**options: Any) -> AsyncIterator[tuple[AlpacaSim, int]]:
    """A simulator on 127.0.0.1 (any free port), fills 10 ms apart unless told otherwise."""
    options.setdefault("fill_delay_s", 0.01)
    sim = make_alpaca_sim(key=KEY, secret=SECRET, seed=7, **options)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_alpaca_sim, sim))
        yield sim, port
        nursery.cancel_scope.cancel()


def settings_for(port: int, **overrides: Any) -> AlpacaSettings:
    """Settings pointing at the simulator, with test-sized timeouts and backoff."""
    values: dict[str, Any] = {
        "api_key": Secret(KEY),
        "api_secret": Secret(SECRET),
        "base_url": f"http://127.0.0.1:{port}",
        "connect_timeout_s": 5.0,
        "read_timeout_s": 5.0,
        "stream_backoff_initial_s": 0.02,
        "stream_backoff_cap_s": 0.1,
        **overrides,
    }
    return AlpacaSettings(**values)


def service_env(port: int, state_dir: Path) -> dict[str, str]:
    """A service's environment: its one broker Alpaca, on the simulator at ``port``."""
    return {
        "ALPACA_API_KEY": KEY,
        "ALPACA_API_SECRET": SECRET,
        "ALPACA_BASE_URL": f"http://127.0.0.1:{port}",
        "ALPACA_STREAM_URL": f"ws://127.0.0.1:{port}/stream",
        "ENABLE_PAPER_TRADING": "false",
        "DEFAULT_BROKER": "alpaca",
        "ULT_STATE_DIR": str(state_dir),
    }


@asynccontextmanager
async def connected(
    port: int,
    *,
    stream: bool = True,
    ledger: FillLedger | None = None,
    now_ns: Callable[[], int] = time.time_ns,
    **overrides: Any,
) -> AsyncIterator[tuple[AlpacaConnector, UpdateLog]]:
    """A connected connector (and its stream running into an ``UpdateLog``).

    Connectors given one ``ledger`` are incarnations of one connection: once
    its stream started, a later one has delivered what the earlier ones did not.
    ``now_ns`` is the connector's wall clock (a test freezing the simulator's
    gives it the same one).
    """
    connector = AlpacaConnector(
        "alpaca",
        settings_for(port, **overrides),
        now_ns=now_ns,
        rng=random.Random(3),
        ledger=ledger,
    )
    async with connected_connector(connector, stream=stream) as log:
        yield connector, log


@asynccontextmanager
async def service_on(
    port: int, secret: str = SECRET, config: Path | None = None
) -> AsyncIterator[Service]:
    """The whole service on the simulator at ``port``, configured from the environment."""
    env = {
        "ALPACA_API_KEY": KEY,
        "ALPACA_API_SECRET": secret,
        "ALPACA_BASE_URL": f"http://127.0.0.1:{port}",
        "ALPACA_STREAM_URL": f"ws://127.0.0.1:{port}/stream",
        "ENABLE_PAPER_TRADING": "false",
        "DEFAULT_BROKER": "alpaca",
        "ORDER_RETRY_DELAY": "10",
    }
    cfg = load_config(config, env=env)
    svc = build_service(cfg, env=env, rng=random.Random(5), store_opener=memory_store_opener())
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()
