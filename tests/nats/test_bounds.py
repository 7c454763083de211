"""The NATS side's bounds: requests past ``max_in_flight`` are refused at once, a
cancelled wait cancels its work on the loop thread, a NATS that is down does not stop
the service."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import trio

from ult_actors.client import AsyncClient, Client, ServiceBusy
from ult_actors.config import NatsSection
from ult_actors.messages import Event, EventTopic, OkReply, Reply, Request
from ult_actors.nats.bridge import LoopThread
from ult_actors.runtime.pubsub import EventBus, Subscription
from ult_actors.testing.nats_server import NatsServer, free_port
from ult_actors.testing.process import UltProcess


class HeldGateway:
    """Answers each request once ``release`` is set; counts who waits."""

    def __init__(self, full_at: int) -> None:
        self.release = trio.Event()
        self.full = trio.Event()
        self.full_at = full_at
        self.waiting = 0
        self.bus: EventBus[Event] = EventBus()

    def prepare(self, request: Request) -> Request:
        return request

    def subscribe(self, topics: frozenset[EventTopic], capacity: int) -> Subscription[Event]:
        return self.bus.subscribe(capacity=capacity)

    async def handle(self, request: Request, peer: Any = None) -> Reply:
        self.waiting += 1
        if self.waiting == self.full_at:
            self.full.set()
        await self.release.wait()
        return OkReply(id=request.id, detail="pong")


async def test_requests_past_max_in_flight_are_answered_busy_at_once(
    nats_server: NatsServer,
) -> None:
    from ult_actors.nats.child import serve_nats  # nats-py: only once the fixture found it
    from ult_actors.nats.connection import NatsSettings

    gateway = HeldGateway(full_at=2)
    settings = NatsSettings(url=nats_server.url, cluster="bounds")
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(serve_nats, gateway, settings, NatsSection(max_in_flight=2))
        async with AsyncClient(url=nats_server.url, cluster="bounds", timeout=20) as client:
            answered = []

            async def ping() -> None:
                await client.ping()
                answered.append(True)

            async with trio.open_nursery() as pings:
                pings.start_soon(ping)
                pings.start_soon(ping)
                with trio.fail_after(20):
                    await gateway.full.wait()
                # Both slots are taken: the third is refused now, not queued.
                with pytest.raises(ServiceBusy, match="max_in_flight"):
                    await client.ping()
                gateway.release.set()
            assert answered == [True, True]
            # A slot is free before its reply reaches the client: one request after
            # another never finds the service busy.
            for _ in range(20):
                await client.ping()
        nursery.cancel_scope.cancel()


async def test_cancelling_a_wait_cancels_the_coroutine_on_the_loop_thread() -> None:
    loop = LoopThread("test").start()
    started = trio.Event()
    token = trio.lowlevel.current_trio_token()
    outcome: list[str] = []

    async def forever() -> None:
        token.run_sync_soon(started.set)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run, forever())
            await started.wait()
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(loop.stop)
    assert outcome == ["cancelled"]


def test_the_service_serves_its_socket_while_nats_is_down(nats_py: None) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    svc = UltProcess.serve(env={"ULT_NATS_URL": dead}).start()
    try:
        with Client(svc.socket, timeout=20) as c:
            order = c.submit("AAPL", "buy", 1, wait=True)
            assert order.status == "filled"
            nats = next(a for a in c.health().actors if a.name == "nats")
            assert nats.state == "running"
    finally:
        assert svc.stop() == 0
        svc.cleanup()
