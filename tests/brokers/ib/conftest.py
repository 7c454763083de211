"""Fixtures of the IB tests: the TWS simulator, and the contract battery's case on it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import trio

from tests.brokers.contract import ContractCase, UpdateLog
from tests.brokers.ib.harness import running_sim
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.settings import IbSettings
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import OrderUpdate
from ult_actors.sim.ib import TwsSimulator


@pytest.fixture
async def sim() -> AsyncIterator[TwsSimulator]:
    """A simulator on an ephemeral loopback port, without market ticks."""
    async with running_sim() as server:
        yield server


async def _stream_until_disconnected(
    connector: IbConnector,
    sink: UpdateLog,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def deliver(update: OrderUpdate) -> None:
        await sink.sink(update)

    with contextlib.suppress(BrokerUnavailable):  # the battery's own disconnect ends it
        await connector.stream_updates(deliver, task_status=task_status)


@pytest.fixture
async def contract_case() -> AsyncIterator[ContractCase]:
    sim = TwsSimulator(tick_interval_s=None)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        connector = IbConnector(
            "ib",
            IbSettings(port=port, ack_timeout_s=5, request_timeout_s=5, client_id_in_use_retries=0),
        )
        with trio.fail_after(10):
            await connector.connect()
        log = UpdateLog()
        await nursery.start(_stream_until_disconnected, connector, log)
        yield ContractCase(
            connector=connector,
            updates=log,
            symbol="AAPL",
            qty=Decimal(10),
            resting_buy_limit=Decimal("1.00"),
            resting_buy_stop=Decimal(100_000),
            resting_tifs=("day", "gtc"),
            id_prefix="ib",
        )
        await connector.disconnect()
        nursery.cancel_scope.cancel()
