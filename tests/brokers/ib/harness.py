"""Setup shared by the IB tests: a running simulator, connector settings, a raw client.

No tests live here; the ``sim`` fixture built on ``running_sim`` is in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import trio

from tests.brokers.contract import UpdateLog
from ult_actors.brokers.ib import encode, wire
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.decode import decode_message
from ult_actors.brokers.ib.protocol import API_PREFIX, FrameStream, encode_raw, version_range_text
from ult_actors.brokers.ib.settings import IbSettings
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import OrderRequest, OrderUpdate
from ult_actors.sim.ib import TwsSimulator

BOUND = 10  # seconds any single step may take before the test fails


@asynccontextmanager
async def running_sim() -> AsyncIterator[TwsSimulator]:
    """A simulator on an ephemeral loopback port, without market ticks."""
    server = TwsSimulator(tick_interval_s=None)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


async def _stream_until_disconnected(
    connector: IbConnector,
    sink: UpdateLog,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def deliver(update: OrderUpdate) -> None:
        await sink.sink(update)

    with contextlib.suppress(BrokerUnavailable):  # the test's own disconnect ends it
        await connector.stream_updates(deliver, task_status=task_status)


@asynccontextmanager
async def streaming_connector(
    sim: TwsSimulator, **overrides: Any
) -> AsyncIterator[tuple[IbConnector, UpdateLog]]:
    """A connector to ``sim``, connected, its updates streaming into the log it comes with."""
    connector = IbConnector("ib", settings(sim.port, **overrides))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            await connector.connect()
        log = UpdateLog()
        await nursery.start(_stream_until_disconnected, connector, log)
        yield connector, log
        await connector.disconnect()
        nursery.cancel_scope.cancel()


def gtc_limit(coid: str, price: Decimal, qty: int = 10) -> OrderRequest:
    """A good-till-canceled limit buy of AAPL: rests below the market, fills above it."""
    return OrderRequest(
        symbol="AAPL",
        side="buy",
        qty=Decimal(qty),
        type="limit",
        limit_price=price,
        time_in_force="gtc",
        client_order_id=coid,
    )


def settings(port: int, **overrides: Any) -> IbSettings:
    """Connector settings for the simulator at ``port``: short timeouts, no client-id retries."""
    base: dict[str, Any] = {
        "port": port,
        "ack_timeout_s": 5.0,
        "request_timeout_s": 5.0,
        "client_id_in_use_retries": 0,
    }
    return IbSettings(**{**base, **overrides})


class RawClient:
    """A minimal TWS API client speaking through our codec, for poking the server."""

    def __init__(self, stream: FrameStream) -> None:
        self.stream = stream
        self.version = 0

    @classmethod
    async def connect(cls, port: int, low: int = 157, high: int = 178) -> RawClient:
        client = cls(FrameStream(await trio.open_tcp_stream("127.0.0.1", port)))
        await client.stream.send_frames([API_PREFIX + encode_raw(version_range_text(low, high))])
        fields = await client.stream.receive_fields()
        assert len(fields) == 2  # server version, connection time
        client.version = int(fields[0])
        return client

    async def send(self, request: wire.Request) -> None:
        await self.stream.send_fields(encode.encode_request(request, self.version))

    async def receive(self) -> wire.Incoming | None:
        return decode_message(await self.stream.receive_fields(), self.version)

    async def until(self, kind: type[wire.Incoming]) -> list[wire.Incoming]:
        seen: list[wire.Incoming] = []
        while not isinstance(msg := await self.receive(), kind):
            if msg is not None:
                seen.append(msg)
        return [*seen, msg]
