"""Who may do what is NATS's own subject permissions: a trader sends commands, a viewer
only follows events (and replays them with a durable consumer of its own).

The server configuration here is the one the README documents.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from ult_actors.client import Client, NotFound, Unauthorized
from ult_actors.messages import Event, OrderUpdate
from ult_actors.testing.nats_server import NatsServer
from ult_actors.testing.process import UltProcess, ult_command

#: Users of a cluster named "default": the service, a trader, a viewer.
SERVER_CONFIG = """
authorization {
  users = [
    { user: ult, password: ult-pw }
    { user: trader, password: trader-pw, permissions: {
        publish: ["ult.default.cmd"]
        subscribe: ["_INBOX.>"]
    } }
    { user: viewer, password: viewer-pw, permissions: {
        publish: [
          "$JS.API.STREAM.INFO.ULT_default_EVENTS"
          "$JS.API.CONSUMER.*.ULT_default_EVENTS.>"
          "$JS.API.CONSUMER.DURABLE.CREATE.ULT_default_EVENTS.>"
          "$JS.API.CONSUMER.MSG.NEXT.ULT_default_EVENTS.>"
          "$JS.ACK.ULT_default_EVENTS.>"
        ]
        subscribe: ["ult.default.events.>", "_INBOX.>"]
    } }
  ]
}
"""


@pytest.fixture(scope="module")
def secured(start_nats: Callable[[str], NatsServer]) -> NatsServer:
    return start_nats(SERVER_CONFIG)


@pytest.fixture(scope="module")
def service(secured: NatsServer) -> Iterator[UltProcess]:
    # The service logs in with the NATS_USER / NATS_PASSWORD systemd credentials.
    with tempfile.TemporaryDirectory(prefix="ult-cred") as creds:
        (Path(creds) / "NATS_USER").write_text("ult\n")
        (Path(creds) / "NATS_PASSWORD").write_text("ult-pw\n")
        env = {"ULT_NATS_URL": secured.url, "CREDENTIALS_DIRECTORY": creds}
        svc = UltProcess.serve(env=env).start()
        yield svc
        svc.stop()
        svc.cleanup()


def _as(server: NatsServer, user: str) -> str:
    return server.url.replace("nats://", f"nats://{user}:{user}-pw@")


def test_a_trader_sends_commands_and_a_viewer_may_not(
    service: UltProcess, secured: NatsServer
) -> None:
    with (
        Client(url=_as(secured, "viewer"), timeout=20) as watcher,
        Client(url=_as(secured, "trader"), timeout=20) as trader,
    ):
        events = watcher.subscribe(["orders"], timeout=20)
        order = trader.submit("AAPL", "buy", 1, client_order_id="perm-trader-1")
        assert trader.order("perm-trader-1").id == order.id
        # The viewer follows the trader's orders as they happen.
        first = next(events)
        assert isinstance(first, OrderUpdate) and first.order.id == order.id
    with Client(url=_as(secured, "viewer"), timeout=20) as viewer:
        with pytest.raises(Unauthorized, match=r"(?i)permissions violation for publish"):
            viewer.submit("AAPL", "buy", 1, client_order_id="perm-viewer-1")
        with pytest.raises(Unauthorized):
            viewer.kill_switch(True)
    with Client(service.socket) as local:
        assert local.orders(open=False)  # the service still runs, and trades
        with pytest.raises(NotFound):
            local.order("perm-viewer-1")


def test_a_viewer_follows_events_and_replays_them_from_where_it_left_off(
    service: UltProcess, secured: NatsServer
) -> None:
    import nats

    decoder = msgspec.msgpack.Decoder(Event)

    async def fetch_until(durable: str, client_order_id: str) -> list[tuple[int, str]]:
        """(stream sequence, client order id) of each order event (on ``orders`` or, with
        a fill, on ``fills``), every event acked, up to and including the first of
        ``client_order_id``."""
        nc = await nats.connect(_as(secured, "viewer"))
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe(
                "ult.default.events.>", durable=durable, stream="ULT_default_EVENTS"
            )
            seen: list[tuple[int, str]] = []
            while not seen or seen[-1][1] != client_order_id:
                (msg,) = await sub.fetch(1, timeout=10)
                event = decoder.decode(msg.data)
                if isinstance(event, OrderUpdate):
                    seen.append((msg.metadata.sequence.stream, event.order.client_order_id or ""))
                await msg.ack()
            return seen
        finally:
            await nc.close()

    with Client(url=_as(secured, "trader"), timeout=20) as trader:
        trader.submit("MSFT", "buy", 1, type="limit", limit_price="1", time_in_force="gtc",
                      client_order_id="perm-replay-1")  # fmt: skip
        first = asyncio.run(fetch_until("viewer-replay", "perm-replay-1"))
        # While the viewer is away, more happens; it comes back to exactly that.
        trader.submit("MSFT", "buy", 1, type="limit", limit_price="1", time_in_force="gtc",
                      client_order_id="perm-replay-2")  # fmt: skip
    later = asyncio.run(fetch_until("viewer-replay", "perm-replay-2"))
    # From the stream's start: what happened before the viewer first looked is there too.
    assert first[0][1] == "perm-trader-1"
    # Then from where it left off: nothing it acknowledged comes again.
    assert min(seq for seq, _ in later) > max(seq for seq, _ in first)


def test_ult_events_over_nats_follows_the_trader_and_never_prints_the_password(
    service: UltProcess, secured: NatsServer
) -> None:
    follow = subprocess.Popen(
        ult_command("events", "--url", _as(secured, "viewer"), "--topics", "orders",
                    "--count", "1", "--json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follow.stderr is not None
        subscribed = follow.stderr.readline()  # written once the subscription is in place
        assert subscribed.startswith("following events on nats://viewer:***@")
        with Client(url=_as(secured, "trader"), timeout=20) as trader:
            trader.submit("AAPL", "buy", 1, client_order_id="perm-cli-events-1")
        out, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
        follow.wait()
    assert follow.returncode == 0, err
    assert "perm-cli-events-1" in out
    assert "viewer-pw" not in subscribed + out + err


def test_neither_a_viewer_nor_a_trader_can_forge_an_event(
    service: UltProcess, secured: NatsServer
) -> None:
    import nats

    async def refused(user: str) -> str:
        denied = asyncio.Event()
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))
            denied.set()

        nc = await nats.connect(_as(secured, user), error_cb=on_error)
        try:
            await nc.publish("ult.default.events.orders", b"forged")
            await nc.flush()
            await asyncio.wait_for(denied.wait(), 10)
        finally:
            await nc.close()
        return errors[0]

    for user in ("viewer", "trader"):
        assert "permissions violation for publish" in asyncio.run(refused(user)).lower()
