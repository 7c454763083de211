"""NATS in trouble: a server that stops answering holds up no order (the socket keeps
trading, the event publisher falls behind and says so, and once NATS is back events flow
again); a restarted server is reconnected to and serves again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ult_actors.client import Client
from ult_actors.messages import OrderUpdate
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
        with Client(url=server.url, timeout=20) as remote:
            events = remote.subscribe(["orders"], timeout=20)
            order = remote.submit("MSFT", "buy", 1, client_order_id="after-the-stall")
            while True:  # bounded by the subscription's timeout per event
                event = next(events)
                if isinstance(event, OrderUpdate) and event.order.id == order.id:
                    break
        # The events of the stall did not fit: the publisher says so (its log line is
        # written by the log thread, a moment later) and has subscribed again (the order
        # above reached the stream through its new subscription).
        svc.wait_log(FELL_BEHIND)
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
        server.stop()
        svc.wait_log("nats disconnected; reconnecting")
        server.start()  # same port, same JetStream store
        svc.wait_log("nats reconnected", timeout=30)
        with Client(url=server.url, timeout=20) as remote:
            order = remote.submit("AAPL", "buy", 1, client_order_id="after-restart")
            assert remote.order("after-restart").id == order.id
    finally:
        assert svc.stop() == 0
        svc.cleanup()
