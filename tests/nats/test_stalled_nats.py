"""NATS in trouble: a server that stops answering holds up no order (the socket keeps
trading, the event publisher falls behind and says so, and once NATS is back events flow
again); a restarted server is reconnected to and serves again."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ult_actors.client import Client
from ult_actors.messages import ActorHealthChanged, Event, EventTopic, OrderUpdate
from ult_actors.nats.bridge import LoopThread
from ult_actors.runtime.pubsub import EventBus, Subscription
from ult_actors.testing.nats_server import NatsServer
from ult_actors.testing.process import UltProcess

FELL_BEHIND = "nats event publisher fell behind; events of the gap are not in the stream"


def test_a_stopped_nats_server_holds_up_no_order_and_events_resume(
    start_nats: Callable[[str], NatsServer], tmp_path: Path
) -> None:
    server = start_nats("")
    config = tmp_path / "ult.toml"
    config.write_text(f'[nats]\nurl = "{server.url}"\nevent_queue = 8\n')
    svc = UltProcess.serve(args=["--config", str(config)]).start()
    try:
        with Client(svc.socket, timeout=20) as local:
            with Client(url=server.url, timeout=20) as remote:
                remote.ping()
            server.pause()
            try:
                # Each order makes events the stopped server cannot take: far more
                # than the publisher's queue of 8.
                orders = [local.submit("AAPL", "buy", 1, wait=True) for _ in range(20)]
                assert all(o.status == "filled" for o in orders)
                assert local.health().trading_state == "active"
            finally:
                server.resume()
        # The events of the stall did not fit: once the batch in hand is acknowledged the
        # publisher says so, having subscribed again (its log line is written by the log
        # thread, a moment later; a loaded machine may take a while to get there).
        svc.wait_log(FELL_BEHIND, timeout=30)
        with Client(url=server.url, timeout=20) as remote:
            events = remote.subscribe(["orders"], timeout=20)
            order = remote.submit("MSFT", "buy", 1, client_order_id="after-the-stall")
            while True:  # bounded by the subscription's timeout per event
                event = next(events)
                if isinstance(event, OrderUpdate) and event.order.id == order.id:
                    break
    finally:
        assert svc.stop() == 0
        svc.cleanup()


def test_the_service_serves_again_once_a_restarted_nats_is_back(
    start_nats: Callable[[str], NatsServer],
) -> None:
    server = start_nats("")
    svc = UltProcess.serve(env={"ULT_NATS_URL": server.url}).start()
    try:
        with Client(url=server.url, timeout=20) as remote:
            remote.ping()
        assert nats_state(svc) == "connected"
        server.stop()
        svc.wait_log("nats disconnected; reconnecting")
        assert nats_state(svc) == "reconnecting"  # ult health says so, not only the log
        server.start()  # same port, same JetStream store
        svc.wait_log("nats reconnected", timeout=30)
        assert nats_state(svc) == "connected"
        with Client(url=server.url, timeout=20) as remote:
            order = remote.submit("AAPL", "buy", 1, client_order_id="after-restart")
            assert remote.order("after-restart").id == order.id
    finally:
        assert svc.stop() == 0
        svc.cleanup()


def nats_state(svc: UltProcess) -> str:
    with Client(svc.socket, timeout=20) as local:
        nats = local.health().nats
    assert nats is not None
    return nats.state


class BusGateway:
    """The publisher's side of a gateway: an event bus; ``subscribed`` once it follows it."""

    def __init__(self) -> None:
        self.bus: EventBus[Event] = EventBus()
        self.subscribed = trio.Event()

    def subscribe(self, topics: frozenset[EventTopic], capacity: int) -> Subscription[Event]:
        self.subscribed.set()
        return self.bus.subscribe(capacity=capacity)


class RetryLog:
    """Keeps the fields of each 'batch not acknowledged' warning; ``enough`` after ``want``."""

    def __init__(self, want: int) -> None:
        self.retries: list[dict[str, Any]] = []
        self.want = want
        self.enough = trio.Event()

    def warning(self, event: str, **fields: Any) -> None:
        if event.startswith("nats event batch not acknowledged"):
            self.retries.append(fields)
            if len(self.retries) == self.want:
                self.enough.set()

    def info(self, event: str, **fields: Any) -> None:
        pass


async def test_a_batch_a_stopped_nats_left_unanswered_is_sent_again_at_once_and_stored_once(
    start_nats: Callable[[str], NatsServer],
) -> None:
    from ult_actors.nats.connection import NatsSettings, open_connection
    from ult_actors.nats.events import EventPublisher, ensure_stream
    from ult_actors.nats.subjects import Subjects

    server = start_nats("")
    subjects = Subjects("retry")
    loop = LoopThread("test").start()
    try:
        nc = await loop.run(open_connection(NatsSettings(url=server.url)))
        js = nc.jetstream()
        await loop.run(ensure_stream(js, subjects, max_age_s=600, max_bytes=1 << 20))
        gateway = BusGateway()
        log = RetryLog(want=3)
        # A short ack wait: three unanswered tries take well under a second, where
        # waiting 1 s then 2 s between them (as for a refusal) would take over three.
        publisher = EventPublisher(gateway, js, loop, subjects, queue=8, log=log, ack_timeout_s=0.2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher.run)
            await gateway.subscribed.wait()
            server.pause()
            try:
                gateway.bus.publish(ActorHealthChanged(name="risk", state="running", restarts=0))
                with trio.fail_after(30):
                    await log.enough.wait()
            finally:
                server.resume()
            with trio.fail_after(30):
                while publisher.published < 1:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        # Sent again straight after each unanswered wait, not after a doubling sleep ...
        assert [retry["in_s"] for retry in log.retries[:3]] == [0.0, 0.0, 0.0]
        assert all("TimeoutError" in retry["error"] for retry in log.retries)
        # ... and the resends (same message id) are stored once.
        info = await loop.run(js.stream_info(subjects.stream))
        assert info.state.messages == 1
        with trio.move_on_after(5), contextlib.suppress(Exception):
            await loop.run(nc.close())
    finally:
        await trio.to_thread.run_sync(loop.stop)
