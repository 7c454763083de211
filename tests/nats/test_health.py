"""``ult health`` shows the NATS connection: connected, or reconnecting since when with the
last error, and the events JetStream has not acknowledged yet; never the password."""

from __future__ import annotations

import json
from collections.abc import Callable

import trio

from tests.nats.test_stalled_nats import BusGateway
from ult_actors.cli.tables import Style, health_document, health_tree
from ult_actors.config import NatsSection
from ult_actors.messages import ActorHealthChanged, HealthSnapshot, NatsHealth
from ult_actors.nats.child import serve_nats
from ult_actors.nats.connection import NatsSettings
from ult_actors.nats.status import NatsStatus
from ult_actors.testing.nats_server import NatsServer

PASSWORD = "pw-not-for-eyes"


async def until(status: NatsStatus, check: Callable[[NatsHealth], bool]) -> NatsHealth:
    with trio.fail_after(30):
        while not check(health := status.health()):
            await trio.sleep(0.01)
    return health


def shown(nats: NatsHealth) -> tuple[str, str]:
    """``ult health`` and ``ult health --json`` of a service with this NATS connection."""
    snapshot = HealthSnapshot(actors=[], pid=1, version="x", nats=nats)
    return health_tree(snapshot, Style(colour=False)), json.dumps(health_document(snapshot))


async def test_health_follows_the_connection_and_the_events_not_yet_in_jetstream(
    start_nats: Callable[[str], NatsServer],
) -> None:
    server = start_nats("")  # no authentication: the URL's user and password are ignored
    url = server.url.replace("nats://", f"nats://ult:{PASSWORD}@")
    status = NatsStatus(url)
    gateway = BusGateway()
    settings = NatsSettings(url=url, cluster="health")
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve_nats(
            gateway, settings, NatsSection(url=url), status=status, task_status=task_status
        ))  # fmt: skip
        connected = status.health()
        assert connected.state == "connected"
        assert connected.url == server.url.replace("nats://", "nats://ult:***@")
        assert connected.publish_backlog == 0
        await gateway.subscribed.wait()

        # A stalled server acknowledges nothing: the events wait, and health counts them.
        server.pause()
        try:
            for restarts in range(3):
                gateway.bus.publish(ActorHealthChanged(name="risk", state="running",
                                                       restarts=restarts))  # fmt: skip
            stalled = await until(status, lambda h: h.publish_backlog == 3)
            text, document = shown(stalled)
            assert "3 events not yet in JetStream" in text
            assert json.loads(document)["nats"]["publish_backlog"] == 3
        finally:
            server.resume()
        acknowledged = await until(status, lambda h: h.publish_backlog == 0)
        assert acknowledged.published == 3

        # A server gone: reconnecting since it went, with the error that says why.
        server.stop()
        lost = await until(status, lambda h: h.state == "reconnecting" and h.last_error != "")
        assert lost.since > connected.since
        text, document = shown(lost)
        assert f"nats {lost.url}: reconnecting for " in text
        assert "last error " in text
        assert json.loads(document)["nats"]["state"] == "reconnecting"
        assert PASSWORD not in text + document + repr(lost)

        server.start()  # same port: nats-py finds it again
        back = await until(status, lambda h: h.state == "connected")
        assert back.since > lost.since
        nursery.cancel_scope.cancel()
