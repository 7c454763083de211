"""Shared pieces of the OANDA tests: a simulator on a real loopback socket and a connector on it.

No tests live here; the test modules import these helpers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import trio

from tests.brokers.contract import UpdateLog
from tests.brokers.harness import connected_connector
from ult_actors.brokers.oanda.connector import OandaConnector, OandaSettings, TransactionCursor
from ult_actors.messages import OrderRequest, OrderType
from ult_actors.secrets import Secret
from ult_actors.sim.oanda.server import OandaSimulator

TOKEN = "sim-token-do-not-leak-5f3a9c0e7b21"
ACCOUNT = "101-001-7654321-001"


@asynccontextmanager
async def running_sim(**options: Any) -> AsyncIterator[OandaSimulator]:
    """A simulator on 127.0.0.1 (any free port); prices frozen unless ``tick_s`` is given."""
    options.setdefault("tick_s", 0)
    sim = OandaSimulator(token=TOKEN, account_id=ACCOUNT, seed=7, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        yield sim
        nursery.cancel_scope.cancel()


def settings_for(sim: OandaSimulator, **overrides: Any) -> OandaSettings:
    """Settings pointing at the simulator, with test-sized timeouts.

    New connections are not paced to OANDA's limit (the simulator enforces none unless a
    test sets one): a restarted connection would wait a second for each it opens.
    """
    values: dict[str, Any] = {
        "token": Secret(TOKEN),
        "account_id": ACCOUNT,
        "base_url": sim.base_url,
        "connect_timeout_s": 5.0,
        "read_timeout_s": 5.0,
        "new_connections_per_s": 1000.0,
        **overrides,
    }
    return OandaSettings(**values)


@asynccontextmanager
async def connected(
    sim: OandaSimulator,
    *,
    stream: bool = True,
    cursor: TransactionCursor | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[OandaConnector, UpdateLog]]:
    """A connected connector (and its stream running into an ``UpdateLog``)."""
    connector = OandaConnector("oanda", settings_for(sim, **overrides), cursor=cursor)
    async with connected_connector(connector, stream=stream) as log:
        yield connector, log


async def delivered_everything(cursor: TransactionCursor, sim: OandaSimulator) -> None:
    """Until the connection moving ``cursor`` has delivered every transaction ``sim`` has.

    A test that makes the stream miss something arms its fault after this: until then
    the stream may still owe a transaction, and a heartbeat naming it ahead of its line
    starts a catch-up fetch, which hears of whatever the venue does meanwhile.
    """
    with trio.fail_after(15):
        while cursor.last_id != int(sim.book.last_id):
            await trio.sleep(0.01)


def resting_buy(client_order_id: str) -> OrderRequest:
    """1,000 EUR_USD bought at 1.00000 (good till cancelled): rests at the simulator's prices."""
    return OrderRequest(
        symbol="EUR_USD",
        side="buy",
        qty=Decimal(1000),
        type="limit",
        limit_price=Decimal("1.00000"),
        time_in_force="gtc",
        client_order_id=client_order_id,
    )


def sell_exit(client_order_id: str, kind: OrderType, price: str) -> OrderRequest:
    """An exit selling 1,000 EUR_USD (good till cancelled): a take-profit limit or a stop."""
    return OrderRequest(
        symbol="EUR_USD",
        side="sell",
        qty=Decimal(1000),
        type=kind,
        limit_price=Decimal(price) if kind == "limit" else None,
        stop_price=Decimal(price) if kind == "stop" else None,
        time_in_force="gtc",
        client_order_id=client_order_id,
    )
